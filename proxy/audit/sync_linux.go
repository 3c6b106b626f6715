package audit

import (
	"os"
	"syscall"
)

// datasync makes f's data durable. The head file is rewritten in place at the same size, so fdatasync suffices
// and skips the inode timestamp update that fsync would also write.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
