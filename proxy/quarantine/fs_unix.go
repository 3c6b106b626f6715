//go:build unix

package quarantine

import (
	"errors"
	"os"
	"syscall"
)

// errBusy is tryFlock's error when another holder has the lock.
var errBusy = errors.New("in use (a release or deletion is in progress)")

// flock takes an exclusive lock on f, waiting for it. flock locks belong to the open file, so two opens in one
// process exclude each other as two processes do.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func tryFlock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errBusy
	}
	return err
}

// syncDir makes renames and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
