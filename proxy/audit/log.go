package audit

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxBytes is the size at which the log rotates when Options.MaxBytes is 0.
const DefaultMaxBytes = 100 << 20

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit log closed")

// ErrDamaged is wrapped by Open's error when the log's last record is not intact, so the chain cannot be
// continued from it. An interrupted write (a last line without newline) is not damage: Open repairs it.
var ErrDamaged = errors.New("audit log damaged")

// Options configure a Log.
type Options struct {
	// Path is the active log file. Rotated files are Path.<UTC time> beside it, and Path.lock keeps a second
	// process from writing the same chain. The directory is created (mode 0700) if missing; files are 0600.
	Path string
	// MaxBytes rotates the log before a record would take it past this size. 0 means DefaultMaxBytes; a
	// negative value never rotates.
	MaxBytes int64
	// SyncInterval is how often written records are fsynced. 0 fsyncs before Append returns (concurrent
	// Appends share one fsync); otherwise a record reaches the disk within the interval, and a power loss can
	// lose at most that much. Records are written to the file at once either way, so a crash of Postern alone
	// loses nothing.
	SyncInterval time.Duration
	// HeadPath is where the chain head (seq and hash of the last record known to be on disk) is kept, fsynced
	// with the records: best on other storage than the log (Postern uses state_dir/audit.head). Open refuses,
	// with an error wrapping ErrTruncated, a log that ends before it. "" keeps no head.
	HeadPath string
	// AcceptTruncation makes Open continue a log that ends before its kept head, recording the loss as an
	// EventTruncation record first (see Log.Accepted). It is for the deliberate `postern audit
	// accept-truncation`, never for normal operation.
	AcceptTruncation bool
	// Logger receives opening, rotation (with the chain head, an anchor worth keeping elsewhere), recovery and
	// failures. nil means slog.Default().
	Logger *slog.Logger
	// Written, if set, is called after each record is written to the file (before its fsync), in chain order,
	// with the record's seq and its line without the newline. It runs under the log's lock, so it must not block
	// or call the log; line is valid only during the call. The search index is fed this way.
	Written func(seq uint64, line []byte)
}

// Log is an append-only, hash-chained audit log. Its methods are safe for concurrent use.
type Log struct {
	path    string
	max     int64
	sync    time.Duration
	log     *slog.Logger
	lock    io.Closer
	now     func() time.Time // tests set it to control rotation names
	written func(seq uint64, line []byte)

	head     *headFile   // nil without Options.HeadPath
	kept     *Head       // the head found at Open, nil when none was kept
	accept   bool        // Options.AcceptTruncation
	accepted *Truncation // the loss accepted at Open

	mu     sync.Mutex
	f      syncFile // nil after a failure, until the next Append reopens
	size   int64
	seq    uint64
	hash   string
	broken error
	closed bool
	line   []byte

	syncMu sync.Mutex    // one fsync at a time; taken before mu
	synced atomic.Uint64 // highest seq known to be on disk

	stop, done chan struct{}
}

// syncFile is the part of *os.File the log writes through (tests substitute failing ones).
type syncFile interface {
	io.Writer
	Sync() error
	Close() error
}

// Open opens the log at opts.Path, creating it if needed, and continues the chain from its last record (or from
// the newest rotated file's when the active one is empty). It checks that record's hash and refuses, with an
// error wrapping ErrDamaged, a log whose last record is not intact. Bytes after the last newline, left by an
// interrupted write, are removed and the removal is itself recorded (EventRecovery).
func Open(opts Options) (*Log, error) {
	if opts.Path == "" {
		return nil, errors.New("audit: no path")
	}
	if opts.SyncInterval < 0 {
		return nil, fmt.Errorf("audit: negative sync interval %v", opts.SyncInterval)
	}
	l := &Log{path: opts.Path, max: opts.MaxBytes, sync: opts.SyncInterval, log: opts.Logger, now: time.Now,
		written: opts.Written}
	if l.max == 0 {
		l.max = DefaultMaxBytes
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	l.log = l.log.With("audit_log", l.path)
	if err := os.MkdirAll(filepath.Dir(l.path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	lock, err := lockFile(l.path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l.lock = lock
	l.accept = opts.AcceptTruncation
	if opts.HeadPath != "" {
		hf, kept, ok, err := openHead(opts.HeadPath)
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("audit: %w", err)
		}
		l.head = hf
		if ok {
			l.kept = &kept
		}
	}
	l.mu.Lock()
	err = l.openActive(true)
	l.mu.Unlock()
	if err == nil && l.head != nil {
		if l.kept == nil && l.seq > 0 {
			l.log.Warn("audit log: no chain head was kept; starting one from the log's last record (records cut "+
				"off before now cannot be detected)", "head_file", opts.HeadPath, "seq", l.seq)
		}
		err = l.head.save(Head{l.seq, l.hash})
	}
	if err != nil {
		if l.head != nil {
			l.head.close()
		}
		lock.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	if l.sync > 0 {
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go l.syncLoop()
	}
	l.log.Info("audit log opened", "seq", l.seq, "hash", l.hash)
	return l, nil
}

// Append writes r as the next record of the chain and fills in its V, Seq, Prev and Hash (and Time, if zero,
// and Event, if empty). With SyncInterval 0 it returns once the record is on disk.
//
// After a failed write or fsync the error is returned and the next Append first reopens the file the way Open
// does; until that succeeds every Append fails. A record whose Append failed may still be in the log.
//
// Every error wraps ErrNotRecorded. AppendDurable fsyncs whatever SyncInterval is.
func (l *Log) Append(r *Record) error {
	seq, err := l.append(r)
	if err != nil {
		return err
	}
	if l.sync == 0 {
		if err := l.syncUpTo(seq); err != nil {
			return fmt.Errorf("%w: %w", ErrNotRecorded, err)
		}
	}
	return nil
}

// append writes r without waiting for an fsync and returns its seq.
func (l *Log) append(r *Record) (uint64, error) {
	if r.Time.IsZero() {
		r.Time = l.now()
	}
	r.Time = r.Time.UTC()
	if r.Event == "" {
		r.Event = EventDecision
	}
	b, err := body(r)
	if err != nil {
		return 0, fmt.Errorf("%w: audit: %w", ErrNotRecorded, err)
	}
	l.mu.Lock()
	seq, prev, hash, err := l.appendLocked(b)
	l.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	r.V, r.Seq, r.Prev, r.Hash = Version, seq, prev, hash
	return seq, nil
}

// Accepted is the loss Open accepted with Options.AcceptTruncation (and recorded as an EventTruncation record),
// nil when the log held its chain head.
func (l *Log) Accepted() *Truncation { return l.accepted }

// Head returns the seq and hash of the last record written (0 and 64 zeros for an empty chain).
func (l *Log) Head() (seq uint64, hash string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.hash
}

// Writable reports why a record cannot be written now, or nil: the log is closed, its last write or fsync
// failed (the next Append retries), or its directory does not let this process create files (rotation does).
// It is the audit part of a readiness check.
func (l *Log) Writable() error {
	l.mu.Lock()
	closed, broken := l.closed, l.broken
	l.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case broken != nil:
		return broken
	}
	if err := dirWritable(filepath.Dir(l.path)); err != nil {
		return fmt.Errorf("audit: %s: directory not writable: %w", filepath.Dir(l.path), err)
	}
	return nil
}

// Close fsyncs and closes the log. Appends after Close return ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	if l.stop != nil {
		close(l.stop)
		<-l.done
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	if l.f != nil {
		if err := l.f.Sync(); err != nil {
			errs = append(errs, err)
		} else {
			l.synced.Store(l.seq)
			if l.head != nil {
				errs = append(errs, l.head.save(Head{l.seq, l.hash}))
			}
		}
		errs = append(errs, l.f.Close())
		l.f = nil
	}
	if l.head != nil {
		errs = append(errs, l.head.close())
	}
	errs = append(errs, l.lock.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("audit: closing %s: %w", l.path, err)
	}
	l.log.Info("audit log closed", "seq", l.seq, "hash", l.hash)
	return nil
}

func (l *Log) appendLocked(b []byte) (seq uint64, prev, hash string, err error) {
	if l.closed {
		return 0, "", "", ErrClosed
	}
	if l.broken != nil {
		if err := l.openActive(false); err != nil {
			return 0, "", "", fmt.Errorf("audit: log unusable since %v; reopening: %w", l.broken, err)
		}
		l.log.Info("audit log reopened after a failure", "failure", l.broken, "seq", l.seq)
		l.broken = nil
	}
	return l.write(b, true)
}

// write seals b as the next record and writes it; l.f must be open.
func (l *Log) write(b []byte, mayRotate bool) (seq uint64, prev, hash string, err error) {
	line, hash := seal(l.line, b, l.seq+1, l.hash)
	if cap(line) <= 64<<10 {
		l.line = line[:0]
	} else {
		l.line = nil
	}
	if mayRotate && l.max > 0 && l.size > 0 && l.size+int64(len(line)) > l.max {
		if err := l.rotate(); err != nil {
			return 0, "", "", l.fail(fmt.Errorf("rotating: %w", err))
		}
	}
	n, err := l.f.Write(line)
	l.size += int64(n)
	if err != nil {
		return 0, "", "", l.fail(fmt.Errorf("writing record %d: %w", l.seq+1, err))
	}
	prev = l.hash
	l.seq++
	l.hash = hash
	if l.written != nil {
		l.written(l.seq, line[:len(line)-1])
	}
	return l.seq, prev, hash, nil
}

// fail puts the log in the failed state: the next Append reopens the file.
func (l *Log) fail(err error) error {
	err = fmt.Errorf("audit: %s: %w", l.path, err)
	l.log.Error("audit log write failed", "err", err)
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	l.broken = err
	return err
}

// syncUpTo returns once record seq is on disk. Concurrent callers share fsyncs: whoever gets syncMu syncs
// everything written so far, and the others find their record already covered.
func (l *Log) syncUpTo(seq uint64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.synced.Load() >= seq {
		return nil
	}
	l.mu.Lock()
	f, head, hash, broken := l.f, l.seq, l.hash, l.broken
	l.mu.Unlock()
	if f == nil {
		if l.synced.Load() >= seq {
			return nil // closed or rotated, which synced it
		}
		if broken != nil {
			return broken
		}
		return ErrClosed
	}
	if err := f.Sync(); err != nil {
		if errors.Is(err, os.ErrClosed) && l.synced.Load() >= seq {
			return nil // rotated meanwhile: rotation syncs the old file before closing it
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.f == f {
			return l.fail(fmt.Errorf("fsync: %w", err))
		}
		return fmt.Errorf("audit: %s: fsync: %w", l.path, err)
	}
	storeMax(&l.synced, head)
	if l.head != nil {
		if err := l.head.save(Head{head, hash}); err != nil {
			// The records are on disk; only the head lags, which weakens the check at the next start. Appends go
			// on: refusing mail because state_dir is full would not make the audit log any safer.
			l.log.Error("audit log: the chain head could not be saved", "err", err)
		}
	}
	return nil
}

func storeMax(a *atomic.Uint64, v uint64) {
	for {
		old := a.Load()
		if old >= v || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func (l *Log) syncLoop() {
	defer close(l.done)
	t := time.NewTicker(l.sync)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			seq := l.seq
			l.mu.Unlock()
			if l.synced.Load() < seq {
				// The error is logged by fail, and the next Append reports it and reopens.
				_ = l.syncUpTo(seq)
			}
		}
	}
}

// rotate renames the active file to Path.<UTC time> and starts a new one. The chain simply continues: the new
// file's first record names the old file's last as prev.
func (l *Log) rotate() error {
	if err := l.f.Sync(); err != nil {
		return err
	}
	storeMax(&l.synced, l.seq)
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return err
	}
	name := l.rotatedName()
	if err := os.Rename(l.path, name); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(l.path)); err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, 0
	l.log.Info("audit log rotated", "rotated_to", name, "seq", l.seq, "hash", l.hash)
	return nil
}

const stampLayout = "20060102T150405.000000000Z"

// rotatedName picks Path.<UTC time> and never an existing name (rename would replace it): after the clock went
// back, it moves on by a nanosecond until the name is free.
func (l *Log) rotatedName() string {
	t := l.now().UTC()
	for {
		name := l.path + "." + t.Format(stampLayout)
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			return name
		}
		t = t.Add(time.Nanosecond)
	}
}

// openActive opens the active file and sets the chain head from it. On the first open it takes whatever is
// there; when reopening after a failure the file must end where the log left off.
func (l *Log) openActive(first bool) error {
	_, statErr := os.Lstat(l.path)
	created := errors.Is(statErr, fs.ErrNotExist)
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	seq, hash, tail, size, err := head(f, l.path)
	if err == nil && seq == 0 {
		seq, hash, err = l.rotatedHead()
	}
	var lost *Truncation
	if err == nil && first && l.kept != nil {
		if herr := checkHead(l.path, l.head.path, *l.kept, seq, hash); herr != nil {
			if !l.accept {
				f.Close()
				if created {
					os.Remove(l.path) // leave the directory as it was found: it is evidence
				}
				return herr
			}
			lost = &Truncation{HeadFile: filepath.Base(l.head.path), KeptSeq: l.kept.Seq, KeptHash: l.kept.Hash,
				FoundSeq: seq, FoundHash: hash}
		}
	}
	if err == nil && !first && (seq != l.seq || hash != l.hash) {
		err = fmt.Errorf("%s changed while open: it ends at seq %d (hash %s), the log wrote up to seq %d (hash %s)",
			l.path, seq, short(hash), l.seq, short(l.hash))
	}
	var rec *Recovery
	if err == nil && len(tail) > 0 {
		// An interrupted write: those bytes were never a record anyone was told was written. Remove them, so the
		// file stays a sequence of whole lines, and say so in the chain.
		off := size - int64(len(tail))
		sum := sha256.Sum256(tail)
		rec = &Recovery{File: filepath.Base(l.path), Offset: off, Bytes: int64(len(tail)), SHA256: hex.EncodeToString(sum[:])}
		err = f.Truncate(off)
		size = off
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil && created {
		err = syncDir(filepath.Dir(l.path))
	}
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size, l.seq, l.hash = f, size, seq, hash
	l.synced.Store(seq)
	if rec != nil {
		l.log.Warn("audit log: removed an interrupted write", "offset", rec.Offset, "bytes", rec.Bytes, "sha256", rec.SHA256)
		b, err := body(&Record{Event: EventRecovery, Time: l.now().UTC(), Recovery: rec})
		if err == nil {
			_, _, _, err = l.write(b, false)
		}
		if err == nil {
			err = l.f.Sync()
		}
		if err != nil {
			return fmt.Errorf("recording the recovery: %w", err)
		}
		l.synced.Store(l.seq)
	}
	if lost != nil {
		l.log.Warn("audit log: accepting a log shorter than its chain head", "kept_seq", lost.KeptSeq,
			"kept_hash", lost.KeptHash, "found_seq", lost.FoundSeq, "found_hash", lost.FoundHash)
		b, err := body(&Record{Event: EventTruncation, Time: l.now().UTC(), Truncation: lost})
		if err == nil {
			_, _, _, err = l.write(b, false)
		}
		if err == nil {
			err = l.f.Sync()
		}
		if err != nil {
			return fmt.Errorf("recording the accepted truncation: %w", err)
		}
		l.synced.Store(l.seq)
		l.accepted = lost
	}
	return nil
}

// head reads the last record of f: its seq and hash (0 when f holds no complete line), and the bytes after the
// last newline.
func head(f *os.File, name string) (seq uint64, hash string, tail []byte, size int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, "", nil, 0, err
	}
	size = fi.Size()
	last, off, tail, err := lastLines(f, size)
	if err != nil {
		return 0, "", nil, 0, fmt.Errorf("%w: %s: %v", ErrDamaged, name, err)
	}
	if last == nil {
		return 0, genesis, tail, size, nil
	}
	h, err := parseLine(last)
	if err == nil && h.calc != h.hash {
		err = errors.New("hash mismatch, the record was changed after it was written")
	}
	if err != nil {
		return 0, "", nil, 0, fmt.Errorf("%w: %s: the last record (offset %d) is not intact: %v; "+
			"check it with `postern audit verify`, then move the file aside (keeping it as evidence) to continue "+
			"the chain from the rotated files, which verify will then show as a gap", ErrDamaged, name, off, err)
	}
	return h.seq, h.hash, tail, size, nil
}

// rotatedHead is the head of the newest rotated file, or the start of a chain when there is none.
func (l *Log) rotatedHead() (uint64, string, error) {
	rotated, err := rotatedFiles(l.path)
	if err != nil || len(rotated) == 0 {
		return 0, genesis, err
	}
	newest := rotated[len(rotated)-1]
	f, err := os.Open(newest)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	seq, hash, tail, _, err := head(f, newest)
	if err == nil && len(tail) > 0 {
		err = fmt.Errorf("%w: %s ends with an incomplete line", ErrDamaged, newest)
	}
	return seq, hash, err
}

// ChainFiles lists the files of the log at path in chain order: its rotated files (path.<UTC time>), ordered by
// the seq of their first record, then path itself if it exists. A path naming one rotated file gives just that
// file. A directory holding one log (or one named audit.log) stands for that log.
func ChainFiles(path string) ([]string, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		base, err := findBase(path)
		if err != nil {
			return nil, err
		}
		path = filepath.Join(path, base)
	}
	if _, ok := splitRotated(filepath.Base(path)); ok {
		if _, err := os.Stat(path); err != nil {
			return nil, err
		}
		return []string{path}, nil
	}
	files, err := rotatedFiles(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		files = append(files, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no audit log at %s: %w", path, fs.ErrNotExist)
	}
	return files, nil
}

// rotatedFiles lists path's rotated files in chain order. The order comes from the records, not the names, so
// that a clock set back between rotations cannot misorder them.
func rotatedFiles(path string) ([]string, error) {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	type file struct {
		path string
		seq  uint64
	}
	var files []file
	for _, e := range entries {
		stamp, ok := strings.CutPrefix(e.Name(), name+".")
		if !ok || !e.Type().IsRegular() || !isStamp(stamp) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		files = append(files, file{p, firstSeq(p)})
	}
	slices.SortFunc(files, func(a, b file) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.path, b.path))
	})
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.path
	}
	return out, nil
}

// firstSeq is the seq of the file's first record, 0 if unreadable (such a file sorts first and fails verify).
func firstSeq(path string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	b := make([]byte, 64)
	n, _ := io.ReadFull(f, b)
	b = b[:n]
	rest, ok := bytes.CutPrefix(b, []byte(linePrefix))
	if !ok {
		return 0
	}
	var seq uint64
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		seq = seq*10 + uint64(c-'0')
	}
	return seq
}

func isStamp(s string) bool {
	_, err := time.Parse(stampLayout, s)
	return err == nil && len(s) == len(stampLayout)
}

// splitRotated splits a rotated file's name into the log's name and the stamp.
func splitRotated(name string) (base string, ok bool) {
	n := len(name) - len(stampLayout)
	if n < 2 || name[n-1] != '.' || !isStamp(name[n:]) {
		return "", false
	}
	return name[:n-1], true
}

// findBase picks the log in a directory: the only one, or audit.log.
func findBase(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	bases := map[string]bool{}
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || strings.HasSuffix(n, ".lock") || strings.HasSuffix(n, ".head") {
			continue
		}
		if b, ok := splitRotated(n); ok {
			n = b
		}
		bases[n] = true
	}
	switch {
	case len(bases) == 1:
		for b := range bases {
			return b, nil
		}
	case bases["audit.log"]:
		return "audit.log", nil
	case len(bases) == 0:
		return "", fmt.Errorf("no audit log in %s: %w", dir, fs.ErrNotExist)
	}
	names := slices.Sorted(maps.Keys(bases))
	return "", fmt.Errorf("%s holds several files (%s): name the log file", dir, strings.Join(names, ", "))
}
