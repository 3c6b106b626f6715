//go:build !unix

package audit

import "os"

// lockFile only creates the lock file: without flock, keeping two writers apart is left to the operator.
func lockFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}

// syncDir is a no-op where directories cannot be fsynced.
func syncDir(string) error { return nil }

const nonBlock = 0
