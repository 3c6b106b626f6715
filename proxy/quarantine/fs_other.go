//go:build !unix

package quarantine

import (
	"errors"
	"os"
)

var errBusy = errors.New("in use (a release or deletion is in progress)")

// Without flock, entries are not protected against a second process; one process is.
func flock(*os.File) error    { return nil }
func tryFlock(*os.File) error { return nil }
func syncDir(string) error    { return nil }
