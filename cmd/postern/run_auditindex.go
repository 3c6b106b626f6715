package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/postern/postern/proxy/auditindex"
	"github.com/postern/postern/proxy/config"
)

// auditIndexDrain is how long a stopping Postern goes on indexing the records still queued; what is left is
// indexed from the log at the next start.
const auditIndexDrain = 5 * time.Second

// auditIndexOptions are the index's database, from the index block.
func auditIndexOptions(ix *config.AuditIndex, logger *slog.Logger) auditindex.Options {
	dsn := ix.Path
	if ix.Driver == auditindex.DriverPostgres {
		dsn = ix.DSN
	}
	return auditindex.Options{Driver: ix.Driver, DSN: dsn, Logger: logger}
}

// auditNode is the name of this node's chain in the index: the configured node, or the host name.
func auditNode(ix *config.AuditIndex) string {
	if ix.Node != "" {
		return ix.Node
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// indexFeed runs the feeder of the audit index beside the proxy. A nil *indexFeed (no index block) does
// nothing.
type indexFeed struct {
	feeder *auditindex.Feeder
	cancel context.CancelFunc
	done   chan struct{}
}

// newIndexFeed makes the feeder for the configuration's index, nil when it has none. Its written method is
// the audit log's write hook; start runs it once the log is open.
func newIndexFeed(cfg *config.Config, logger *slog.Logger) *indexFeed {
	if cfg.Audit == nil || cfg.Audit.Index == nil {
		return nil
	}
	ix := cfg.Audit.Index
	node := auditNode(ix)
	logger.Info("audit index", "driver", ix.Driver, "node", node)
	return &indexFeed{feeder: auditindex.NewFeeder(auditindex.FeedOptions{Open: auditIndexOptions(ix, logger),
		Node: node, LogPath: cfg.Audit.Path, Logger: logger})}
}

func (x *indexFeed) written() func(uint64, []byte) {
	if x == nil {
		return nil
	}
	return x.feeder.Written
}

func (x *indexFeed) start() {
	if x == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	x.cancel, x.done = cancel, make(chan struct{})
	go func() {
		defer close(x.done)
		x.feeder.Run(ctx, auditIndexDrain)
	}()
}

// stop indexes what is queued (for at most auditIndexDrain) and stops the feeder.
func (x *indexFeed) stop() {
	if x == nil || x.cancel == nil {
		return
	}
	x.cancel()
	<-x.done
}
