package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/metrics"
)

// publishMetrics sets what the metrics report about the process: the build, the serving configuration and what
// the quarantine holds.
func publishMetrics(cfg *config.Config) {
	bi := readBuildInfo()
	metrics.SetBuild(bi.Version, bi.Commit)
	metrics.ConfigLoaded(cfg.Version)
	var dirs []string
	if cfg.Quarantine != nil {
		dirs = append(dirs, cfg.Quarantine.Dir) // the store every listener shares
	}
	for _, l := range cfg.Listeners {
		if l.QuarantineDir != "" && !slices.Contains(dirs, l.QuarantineDir) {
			dirs = append(dirs, l.QuarantineDir)
		}
	}
	if len(dirs) > 0 {
		metrics.SetQuarantine(quarantineStats(dirs, 10*time.Second))
	}
}

// quarantineStats counts the entries of the quarantine directories (a NAME.json with its NAME.eml) and the bytes
// of their messages. A scrape every few seconds must not list a large quarantine each time: the count is kept for
// maxAge.
func quarantineStats(dirs []string, maxAge time.Duration) metrics.QuarantineStats {
	var (
		mu          sync.Mutex
		at          time.Time
		n, b        int64
		lastErr     error
		everCounted bool
	)
	return func() (int64, int64, error) {
		mu.Lock()
		defer mu.Unlock()
		if everCounted && time.Since(at) < maxAge {
			return n, b, lastErr
		}
		n, b, lastErr = 0, 0, nil
		for _, dir := range dirs {
			entries, err := os.ReadDir(dir)
			if err != nil {
				if !os.IsNotExist(err) {
					lastErr = err
				}
				continue
			}
			for _, e := range entries {
				name, ok := strings.CutSuffix(e.Name(), ".json")
				if !ok || strings.HasPrefix(name, ".") {
					continue
				}
				fi, err := os.Stat(filepath.Join(dir, name+".eml"))
				if err != nil {
					continue
				}
				n++
				b += fi.Size()
			}
		}
		at, everCounted = time.Now(), true
		return n, b, lastErr
	}
}
