//go:build !linux

package main

import (
	"errors"
	"io"
	"os"
)

func isTerminal(*os.File) bool { return false }

func promptPassword(io.Writer, string) (string, error) {
	return "", errors.New("no password prompt on this system: use -password-stdin")
}
