package auditindex

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/proxy/audit"
)

// Defaults of FeedOptions.
const (
	DefaultQueueRecords = 10000
	DefaultQueueBytes   = 64 << 20
	batchRecords        = 500
)

// FeedOptions configure a Feeder.
type FeedOptions struct {
	// Index is the index to feed. When nil, Run opens one with Open (again after a failure, until it can) and
	// closes it when it returns: a database that is down when Postern starts delays the index, not the mail.
	Index *Index
	Open  Options
	// Node is the name of this node's chain in the index.
	Node string
	// LogPath is the audit log (audit.Options.Path), read to catch up.
	LogPath string
	// QueueRecords and QueueBytes bound the records waiting to be indexed; 0 means the defaults. A record past
	// either bound is not queued but read from the log later.
	QueueRecords int
	QueueBytes   int64
	// Logger receives the feeder's log; nil means slog.Default().
	Logger *slog.Logger
}

// FeedStats count a Feeder's work since it started.
type FeedStats struct {
	Indexed  uint64 // records written to the index
	Dropped  uint64 // records that did not fit in the queue (indexed later from the log)
	Failures uint64 // batches or catch-ups that failed (retried later)
	Last     uint64 // seq of the last record indexed
}

// Feeder indexes the records of one node's audit log as they are written. Pass Written as the log's
// audit.Options.Written, then call Run.
type Feeder struct {
	ix   *Index
	open Options
	node string
	path string
	log  *slog.Logger

	maxRecords int
	maxBytes   int64

	mu     sync.Mutex
	queue  []Line
	bytes  int64
	behind bool // a record was dropped: read the log
	wake   chan struct{}

	indexed, dropped, failures, last atomic.Uint64

	// retry is the pause after the next failure: it doubles up to maxRetry and starts again at minRetry after
	// a success. Tests shorten it.
	retry, minRetry time.Duration
}

const maxRetry = time.Minute

// NewFeeder returns a Feeder for node's log at opts.LogPath.
func NewFeeder(opts FeedOptions) *Feeder {
	f := &Feeder{ix: opts.Index, open: opts.Open, node: opts.Node, path: opts.LogPath, log: opts.Logger, maxRecords: opts.QueueRecords,
		maxBytes: opts.QueueBytes, wake: make(chan struct{}, 1), retry: time.Second, minRetry: time.Second}
	if f.log == nil {
		f.log = slog.Default()
	}
	f.log = f.log.With("audit_index_node", f.node)
	if f.maxRecords <= 0 {
		f.maxRecords = DefaultQueueRecords
	}
	if f.maxBytes <= 0 {
		f.maxBytes = DefaultQueueBytes
	}
	return f
}

// Written queues a record written to the log. It is audit.Options.Written: it copies line, never blocks and
// never fails; a record that does not fit is read from the log later.
func (f *Feeder) Written(seq uint64, line []byte) {
	f.mu.Lock()
	if len(f.queue) >= f.maxRecords || f.bytes+int64(len(line)) > f.maxBytes {
		f.behind = true
		f.mu.Unlock()
		f.dropped.Add(1)
	} else {
		f.queue = append(f.queue, Line{Seq: seq, Data: bytes.Clone(line)})
		f.bytes += int64(len(line))
		f.mu.Unlock()
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Stats returns the feeder's counters.
func (f *Feeder) Stats() FeedStats {
	return FeedStats{Indexed: f.indexed.Load(), Dropped: f.dropped.Load(), Failures: f.failures.Load(), Last: f.last.Load()}
}

// Run catches the index up with the log, then indexes what Written queues, until ctx is done; then it indexes
// what is still queued (for at most drain) and returns. Failures are logged and retried: Run returns only when
// ctx is done.
func (f *Feeder) Run(ctx context.Context, drain time.Duration) {
	caught := false
	for {
		if ctx.Err() != nil {
			break
		}
		if f.ix == nil {
			if f.open.Logger == nil {
				f.open.Logger = f.log
			}
			ix, err := Open(ctx, f.open)
			if err != nil {
				f.fail(ctx, "opening the index", err)
				continue
			}
			f.ix = ix
			defer ix.Close()
		}
		if !caught {
			if err := f.start(ctx); err != nil {
				f.fail(ctx, "catching up with the audit log", err)
				continue
			}
			caught = true
		}
		if err := f.step(ctx); err != nil {
			f.fail(ctx, "indexing audit records", err)
			continue
		}
		f.retry = f.minRetry
		select {
		case <-ctx.Done():
		case <-f.wake:
		}
	}
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if f.ix != nil {
		drain := f.step
		if !caught {
			drain = f.start
		}
		if err := drain(dctx); err != nil {
			f.log.Warn("audit index: records left unindexed at shutdown; they are indexed from the log at the next start",
				"error", err)
		}
	}
}

// fail counts and logs a failure, marks the feeder behind (the log is read again) and waits before the retry.
// An error because ctx ended is no failure: Run is stopping.
func (f *Feeder) fail(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		f.mu.Lock()
		f.behind = true
		f.mu.Unlock()
		return
	}
	f.failures.Add(1)
	f.mu.Lock()
	f.behind = true
	f.queue, f.bytes = nil, 0
	f.mu.Unlock()
	f.log.Error("audit index: "+what+" failed; mail is unaffected, retrying", "error", err, "retry_in", f.retry)
	t := time.NewTimer(f.retry)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	f.retry = min(2*f.retry, maxRetry)
}

// start checks that the index's last record of this node is still the log's record at that seq and catches up.
// When it is not (the log was replaced, or continued after an accepted truncation), the node's rows are rebuilt
// from the log.
func (f *Feeder) start(ctx context.Context) error {
	seq, hash, err := f.ix.Last(ctx, f.node)
	if err != nil {
		return err
	}
	if seq > 0 {
		got, err := recordAt(f.path, seq)
		if err != nil {
			return err
		}
		if got != hash {
			f.log.Warn("audit index: the index does not match the audit log (the log was replaced or lost records); "+
				"rebuilding this node's records from the log", "index_seq", seq, "index_hash", hash, "log_hash", got)
			if err := f.ix.DeleteNode(ctx, f.node); err != nil {
				return err
			}
			seq = 0
		}
	}
	f.last.Store(seq)
	f.mu.Lock()
	f.behind = true
	f.mu.Unlock()
	return f.step(ctx)
}

// step indexes what is queued, reading the log first when records were missed.
func (f *Feeder) step(ctx context.Context) error {
	for {
		f.mu.Lock()
		behind := f.behind
		f.behind = false
		queue := f.queue
		f.queue, f.bytes = nil, 0
		f.mu.Unlock()
		if behind {
			if err := f.catchUp(ctx); err != nil {
				return err
			}
		}
		if len(queue) == 0 {
			return nil
		}
		// Only records that follow on: after a gap (a dropped record, or records another writer added), read
		// the log instead.
		last := f.last.Load()
		var batch []Line
		for _, l := range queue {
			if l.Seq <= last {
				continue
			}
			if l.Seq != last+1 {
				f.mu.Lock()
				f.behind = true
				f.mu.Unlock()
				break
			}
			batch = append(batch, l)
			last = l.Seq
			if len(batch) == batchRecords {
				if err := f.add(ctx, batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if err := f.add(ctx, batch); err != nil {
			return err
		}
	}
}

// catchUp indexes every record of the log after the last one indexed.
func (f *Feeder) catchUp(ctx context.Context) error {
	after := f.last.Load()
	batch := make([]Line, 0, batchRecords)
	n, err := audit.ReadFrom(f.path, after, func(seq uint64, line []byte) error {
		batch = append(batch, Line{Seq: seq, Data: bytes.Clone(line)})
		if len(batch) == batchRecords {
			if err := f.add(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
		return ctx.Err()
	})
	if _, broken := errors.AsType[*audit.ChainError](err); err == nil || broken {
		// Everything before a broken record is good: index it, then report the break.
		if aerr := f.add(ctx, batch); aerr != nil {
			err = aerr
		}
	}
	if err != nil {
		return fmt.Errorf("reading %s after seq %d: %w", f.path, after, err)
	}
	if n > 0 {
		f.log.Info("audit index caught up with the log", "records", n, "seq", f.last.Load())
	}
	return nil
}

func (f *Feeder) add(ctx context.Context, batch []Line) error {
	if len(batch) == 0 {
		return nil
	}
	if err := f.ix.Add(ctx, f.node, batch); err != nil {
		return err
	}
	f.indexed.Add(uint64(len(batch)))
	f.last.Store(batch[len(batch)-1].Seq)
	return nil
}

var errFound = errors.New("found")

// recordAt returns the hash of the log's record at seq, "" when the log has none there.
func recordAt(path string, seq uint64) (string, error) {
	var hash string
	_, err := audit.ReadFrom(path, seq-1, func(s uint64, line []byte) error {
		if s == seq {
			hash = lineHash(line)
		}
		return errFound
	})
	if err != nil && !errors.Is(err, errFound) {
		return "", err // a damaged log: verify says where; nothing is rebuilt from it
	}
	return hash, nil
}

// lineHash is the hash member of a line: the 64 hex digits before its closing `"}`.
func lineHash(line []byte) string {
	const tail = len(`"}`)
	if len(line) < 64+tail {
		return ""
	}
	return string(line[len(line)-tail-64 : len(line)-tail])
}

// Reindex rebuilds node's records in ix from the log at logPath: it removes them, then indexes every record of
// the log. It returns the number of records indexed. Run it while Postern is stopped, or Postern's feeder
// indexes beside it (harmlessly: a record indexed twice is kept once).
func Reindex(ctx context.Context, ix *Index, node, logPath string) (int, error) {
	if err := ix.DeleteNode(ctx, node); err != nil {
		return 0, err
	}
	f := NewFeeder(FeedOptions{Index: ix, Node: node, LogPath: logPath, Logger: slog.New(slog.DiscardHandler)})
	if err := f.catchUp(ctx); err != nil {
		return int(f.indexed.Load()), err
	}
	return int(f.indexed.Load()), nil
}
