package audit

import (
	"errors"
	"io/fs"
	"os"
)

// ReadFrom calls fn, in chain order, with the seq and line (without its newline) of every record of the log at
// path whose seq is greater than after: the rotated files and the active file, as ChainFiles lists them. Files
// that hold only earlier records are not read, so catching up on a long log costs what is new.
//
// Every record read is checked as Verify checks it, from the first record of the first file read on; the
// chain's start is not checked when that file is not the first (use VerifyFiles for the whole chain). At a broken
// record ReadFrom stops with a *ChainError: fn has seen everything before it. An error from fn stops it too, and
// is returned as it is. line is valid only during the call.
//
// It returns the number of records passed to fn. A log that does not exist yet has none.
func ReadFrom(path string, after uint64, fn func(seq uint64, line []byte) error) (int, error) {
	files, err := ChainFiles(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	// The last file whose first record is at most after+1 holds the first record wanted.
	start := 0
	for i, f := range files {
		if s := firstSeq(f); s != 0 && s <= after+1 {
			start = i
		}
	}
	c, _ := newChecker(AnyPrev)
	n := 0
	c.each = func(seq uint64, line []byte) error {
		if seq <= after {
			return nil
		}
		n++
		return fn(seq, line)
	}
	for _, p := range files[start:] {
		f, err := os.Open(p)
		if err != nil {
			return n, err
		}
		err = c.check(p, f)
		f.Close()
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
