//go:build unix

package audit

import "golang.org/x/sys/unix"

func dirWritable(dir string) error { return unix.Access(dir, unix.W_OK) }
