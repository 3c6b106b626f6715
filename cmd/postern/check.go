package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/hashicorp/hcl/v2"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/policy"
)

func init() {
	register(command{
		name:    "check",
		summary: "validate a configuration and load its plugins",
		run:     runCheck,
	})
}

// runCheck validates a configuration the way `postern run` loads it: syntax, names and types, references,
// when expressions, plugin files and pins, and every plugin loaded into a plugin host (ABI version, imports,
// postern_init accepting its configuration). Exit status 0 with a one-line summary, 1 with every diagnostic.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postern check [-cache DIR] CONFIG.hcl")
		fs.PrintDefaults()
	}
	cacheDir := fs.String("cache", defaultCacheDir(), "compilation cache `DIR` for the plugins (\"\" disables it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(fs.Arg(0))
	if err != nil {
		return reportConfigError(stderr, err)
	}
	if len(cfg.Warnings) > 0 {
		_ = cfg.WriteDiagnostics(stderr, cfg.Warnings)
	}
	if err := cfg.CheckServable(); err != nil {
		return reportConfigError(stderr, err)
	}
	snap, err := policy.Build(context.Background(), cfg, policy.Options{CacheDir: *cacheDir})
	if err != nil {
		return reportConfigError(stderr, err)
	}
	defer snap.Close(context.Background())
	fmt.Fprintf(stdout, "ok: %s (config sha256 %s)\n", cfg.Summary(), cfg.Version)
	return 0
}

// reportConfigError prints a configuration error with its source lines and returns exit status 1.
func reportConfigError(stderr io.Writer, err error) int {
	var ce *config.Error
	if errors.As(err, &ce) {
		_ = ce.WriteText(stderr)
		n := 0
		for _, d := range ce.Diagnostics {
			if d.Severity == hcl.DiagError {
				n++
			}
		}
		fmt.Fprintf(stderr, "postern: configuration refused: %d error(s)\n", n)
		return 1
	}
	fmt.Fprintf(stderr, "postern: %v\n", err)
	return 1
}
