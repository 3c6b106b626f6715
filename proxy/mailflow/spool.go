package mailflow

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
)

// Spool holds one message while it is filtered: in memory up to a threshold, then in a temporary file that is
// unlinked at once (so a crash leaves nothing behind). It is an io.Writer while the message arrives and an
// io.ReaderAt afterwards.
type Spool struct {
	dir       string
	threshold int64
	buf       *[]byte
	f         *os.File
	size      int64
	hash      hash.Hash // nil unless a digest was asked for
}

var spoolBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// NewSpool returns an empty spool that spills to a file in dir above threshold bytes; with digest it keeps the
// SHA-256 of what is written (Sum).
func NewSpool(dir string, threshold int64, digest bool) *Spool {
	sp := &Spool{dir: dir, threshold: threshold, buf: spoolBufs.Get().(*[]byte)}
	if digest {
		sp.hash = sha256.New()
	}
	return sp
}

func (sp *Spool) Write(p []byte) (int, error) {
	if sp.hash != nil {
		sp.hash.Write(p)
	}
	if sp.f == nil && sp.size+int64(len(p)) > sp.threshold {
		f, err := os.CreateTemp(sp.dir, "postern-spool-*")
		if err != nil {
			return 0, fmt.Errorf("spooling message: %w", err)
		}
		// Unlinked at once: the open descriptor keeps the data, nothing outlives the process.
		os.Remove(f.Name())
		if _, err := f.Write(*sp.buf); err != nil {
			f.Close()
			return 0, fmt.Errorf("spooling message: %w", err)
		}
		sp.f = f
		sp.release()
	}
	if sp.f != nil {
		n, err := sp.f.Write(p)
		sp.size += int64(n)
		if err != nil {
			return n, fmt.Errorf("spooling message: %w", err)
		}
		return n, nil
	}
	*sp.buf = append(*sp.buf, p...)
	sp.size += int64(len(p))
	return len(p), nil
}

// Size is the number of bytes written.
func (sp *Spool) Size() int64 { return sp.size }

// Sum returns the hex SHA-256 of what was written, or "" if no digest was asked for.
func (sp *Spool) Sum() string {
	if sp.hash == nil {
		return ""
	}
	return hex.EncodeToString(sp.hash.Sum(nil))
}

// ReaderAt returns the content. It stays valid until Close.
func (sp *Spool) ReaderAt() io.ReaderAt {
	if sp.f != nil {
		return sp.f
	}
	return bytes.NewReader(*sp.buf)
}

// Reader returns the whole content from the start.
func (sp *Spool) Reader() io.Reader { return io.NewSectionReader(sp.ReaderAt(), 0, sp.size) }

// InMemory reports whether the content is still in memory.
func (sp *Spool) InMemory() bool { return sp.f == nil }

func (sp *Spool) release() {
	if sp.buf != nil {
		if cap(*sp.buf) <= 1<<20 {
			*sp.buf = (*sp.buf)[:0]
			spoolBufs.Put(sp.buf)
		}
		sp.buf = nil
	}
}

// Close frees the memory or the file.
func (sp *Spool) Close() error {
	sp.release()
	if sp.f != nil {
		err := sp.f.Close()
		sp.f = nil
		return err
	}
	return nil
}
