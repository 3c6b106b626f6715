package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// ErrTruncated is wrapped by Open's error when the log ends before the chain head kept in Options.HeadPath:
// records the log reported as written are gone (cut off the end, the file truncated, replaced or deleted). Open
// refuses to continue such a chain unless Options.AcceptTruncation is set.
var ErrTruncated = errors.New("audit log shorter than its chain head")

// Head is a position in the chain: the seq and hash of one record.
type Head struct {
	Seq  uint64
	Hash string
}

// Truncation is the body of an EventTruncation record: the chain head that was kept, and where the log really
// ended when an operator accepted the loss. The records between are gone; the chain continues after Found.
type Truncation struct {
	// HeadFile is the base name of the file that kept the head.
	HeadFile string `json:"head_file"`
	// KeptSeq and KeptHash are the head as kept: the last record known to have been on disk.
	KeptSeq  uint64 `json:"kept_seq"`
	KeptHash string `json:"kept_hash"`
	// FoundSeq and FoundHash are the last record the log still had (0 and 64 zeros when it had none).
	FoundSeq  uint64 `json:"found_seq"`
	FoundHash string `json:"found_hash"`
}

// The head file is one fixed-size line, rewritten in place (one small write at offset 0, then fsync) so that
// keeping it costs one fsync, not a rename and two:
//
//	postern-audit-head 1 seq=00000000000000000042 hash=<64 hex> crc=<8 hex>\n
//
// crc is the CRC-32 of everything before " crc=", so that a torn write is told apart from a head.
const (
	headMagic = "postern-audit-head 1 "
	headSize  = len(headMagic) + len("seq=") + 20 + len(" hash=") + hexLen + len(" crc=") + 8 + 1
)

func formatHead(h Head) []byte {
	b := make([]byte, 0, headSize)
	b = append(b, headMagic...)
	b = fmt.Appendf(b, "seq=%020d hash=%s", h.Seq, h.Hash)
	b = fmt.Appendf(b, " crc=%08x\n", crc32.ChecksumIEEE(b))
	return b
}

func parseHead(b []byte) (Head, error) {
	if len(b) != headSize || !bytes.HasPrefix(b, []byte(headMagic)) || b[len(b)-1] != '\n' {
		return Head{}, errors.New("not a chain head file")
	}
	body, crc, ok := bytes.Cut(b[:len(b)-1], []byte(" crc="))
	if !ok {
		return Head{}, errors.New("not a chain head file")
	}
	if want, err := strconv.ParseUint(string(crc), 16, 32); err != nil || uint32(want) != crc32.ChecksumIEEE(body) {
		return Head{}, errors.New("checksum mismatch (a torn or edited write)")
	}
	rest := body[len(headMagic):]
	seqPart, hashPart, ok := bytes.Cut(rest, []byte(" hash="))
	seqDigits, ok2 := bytes.CutPrefix(seqPart, []byte("seq="))
	if !ok || !ok2 || len(hashPart) != hexLen || !isHex(hashPart) {
		return Head{}, errors.New("not a chain head file")
	}
	seq, err := strconv.ParseUint(string(seqDigits), 10, 64)
	if err != nil {
		return Head{}, errors.New("bad seq in chain head file")
	}
	return Head{Seq: seq, Hash: string(hashPart)}, nil
}

// ReadHead reads the chain head kept at path. ok is false when the file does not exist.
func ReadHead(path string) (h Head, ok bool, err error) {
	f, err := openRegular(path, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return Head{}, false, nil
	}
	if err != nil {
		return Head{}, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(headSize)+1))
	if err != nil {
		return Head{}, false, fmt.Errorf("reading the chain head %s: %w", path, err)
	}
	h, err = parseHead(b)
	if err != nil {
		return Head{}, false, fmt.Errorf("chain head %s: %w", path, err)
	}
	return h, true, nil
}

// headFile keeps the chain head on disk.
type headFile struct {
	path string
	f    *os.File
	last Head
}

// openHead opens (creating it if needed) the head file at path and reads what it holds.
func openHead(path string) (hf *headFile, kept Head, ok bool, err error) {
	kept, ok, err = ReadHead(path)
	if err != nil {
		return nil, Head{}, false, fmt.Errorf("%w; if the file was damaged, check the log with `postern audit verify` "+
			"and remove %s to start a new head from the log's last record", err, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, Head{}, false, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, Head{}, false, err
	}
	if !ok {
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, Head{}, false, err
		}
	}
	return &headFile{path: path, f: f, last: kept}, kept, ok, nil
}

// save records h as the head, durably. Records up to h must be on disk already.
func (hf *headFile) save(h Head) error {
	if h == hf.last {
		return nil
	}
	if _, err := hf.f.WriteAt(formatHead(h), 0); err != nil {
		return fmt.Errorf("writing the chain head %s: %w", hf.path, err)
	}
	sync := datasync
	if hf.last == (Head{}) {
		sync = (*os.File).Sync // the first write sets the file's size: that is metadata
	}
	if err := sync(hf.f); err != nil {
		return fmt.Errorf("fsync of the chain head %s: %w", hf.path, err)
	}
	hf.last = h
	return nil
}

func (hf *headFile) close() error { return hf.f.Close() }

// checkHead compares the log's last complete record (seq, hash) with the head kept. It returns nil when the log
// holds the kept record (at its end or before records written since), and an error wrapping ErrTruncated when
// the log ends before it or has another record at its place.
func checkHead(logPath, headPath string, kept Head, seq uint64, hash string) error {
	if seq == kept.Seq && hash == kept.Hash {
		return nil
	}
	if seq > kept.Seq {
		found, ok, err := recordHash(logPath, kept.Seq)
		if err != nil {
			return fmt.Errorf("looking for the chain head's record %d: %w", kept.Seq, err)
		}
		if ok && found == kept.Hash {
			return nil // records written after the head was last saved (a crash, or a background fsync)
		}
		if ok {
			return fmt.Errorf("%w: record %d of %s has hash %s, but the chain head kept in %s says %s: the log was "+
				"rewritten from there on. %s", ErrTruncated, kept.Seq, logPath, short(found), headPath, short(kept.Hash), acceptHint)
		}
	}
	what := fmt.Sprintf("ends at seq %d", seq)
	if seq == 0 {
		what = "has no records"
	}
	return fmt.Errorf("%w: %s %s, but the chain head kept in %s says record %d (hash %s) was written: records were "+
		"cut off its end, or the file was truncated, replaced or deleted. %s", ErrTruncated, logPath, what, headPath,
		kept.Seq, short(kept.Hash), acceptHint)
}

const acceptHint = "Postern does not continue a chain over lost records. Keep the files as evidence, check them " +
	"with `postern audit verify`, and once the loss is understood accept it with `postern audit accept-truncation`, " +
	"which records it in the chain"

// recordHash finds the record with the given seq among the log's files, newest first, and returns its hash.
func recordHash(path string, seq uint64) (hash string, ok bool, err error) {
	files, err := ChainFiles(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	for i := len(files) - 1; i >= 0; i-- {
		if first := firstSeq(files[i]); first == 0 || first > seq {
			continue
		}
		return findSeq(files[i], seq)
	}
	return "", false, nil
}

// findSeq scans one file for the record with the given seq.
func findSeq(path string, seq uint64) (string, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	prefix := strconv.AppendUint([]byte(linePrefix), seq, 10)
	prefix = append(prefix, ',')
	br := bufio.NewReaderSize(f, 64<<10)
	var line []byte
	for {
		line, err = readLine(br, line[:0])
		if err != nil {
			if err == io.EOF {
				return "", false, nil
			}
			return "", false, err
		}
		if !bytes.HasPrefix(line, prefix) {
			continue
		}
		h, err := parseLine(line[:len(line)-1])
		if err != nil || h.calc != h.hash {
			return "", false, fmt.Errorf("%s: record %d is not intact", path, seq)
		}
		return h.hash, true, nil
	}
}

// CheckHead reports, as a *ChainError, whether a verified chain still holds the kept head: its last record must
// be at or after the head, and VerifyFiles must have been given kept.Hash as an anchor (then a rewritten record
// at the head's place is reported as a missing anchor).
func CheckHead(sum Summary, headPath string, kept Head, lastFile string) error {
	if sum.LastSeq >= kept.Seq {
		return nil
	}
	return &ChainError{File: lastFile, Seq: sum.LastSeq, Problem: ProblemTruncated, Detail: fmt.Sprintf(
		"the chain ends at seq %d, but the chain head kept in %s says record %d (hash %s) was written: "+
			"records were cut off the end, or a file was truncated, replaced or deleted", sum.LastSeq, headPath,
		kept.Seq, short(kept.Hash))}
}

// openRegular opens path for reading without blocking on a FIFO or device, and refuses anything but a regular
// file.
func openRegular(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|nonBlock, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
