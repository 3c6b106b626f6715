package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

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
		fmt.Fprintln(fs.Output(), "usage: postern check [-cache DIR] (-config FILE | FILE)")
		fmt.Fprintln(fs.Output(), "\nValidates a configuration as `postern run` would load it, plugins included, and prints a summary.")
		fmt.Fprintln(fs.Output(), "Exit status: 0 valid, 1 refused (every problem is printed with its file:line), 2 usage error.")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "the configuration `FILE` (or give it as the argument)")
	cache := cacheFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	path := *configPath
	switch {
	case path == "" && fs.NArg() == 1:
		path = fs.Arg(0)
	case path != "" && fs.NArg() == 0:
	default:
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		return reportConfigError(stderr, err)
	}
	if len(cfg.Warnings) > 0 {
		_ = cfg.WriteDiagnostics(stderr, cfg.Warnings)
	}
	if err := cfg.CheckServable(); err != nil {
		return reportConfigError(stderr, err)
	}
	snap, err := policy.Build(context.Background(), cfg, policy.Options{CacheDir: cache.dirFor(cfg)})
	if err != nil {
		return reportConfigError(stderr, err)
	}
	defer snap.Close(context.Background())
	fmt.Fprintf(stdout, "ok: %s (config sha256 %s)\n", cfg.Summary(), cfg.Version)
	return 0
}

// cacheDir is the -cache flag of the commands that compile plugins. Unset, it is the configuration's
// state_dir/cache, the cache `postern run` fills, so that checking or explaining a configuration the proxy
// already serves compiles nothing; without a state_dir it is the user's cache folder. -cache "" disables it.
type cacheDir struct {
	dir string
	set bool
}

func cacheFlag(fs *flag.FlagSet) *cacheDir {
	c := &cacheDir{}
	fs.Var(c, "cache", "compilation cache `DIR` for the plugins (default: state_dir/cache, else "+
		defaultCacheDir()+"; \"\" disables it)")
	return c
}

func (c *cacheDir) String() string { return c.dir }

func (c *cacheDir) Set(s string) error {
	c.dir, c.set = s, true
	return nil
}

// dirFor returns the cache folder to use with cfg (nil: no configuration).
func (c *cacheDir) dirFor(cfg *config.Config) string {
	switch {
	case c.set:
		return c.dir
	case cfg != nil && cfg.StateDir != "":
		return filepath.Join(cfg.StateDir, "cache")
	}
	return defaultCacheDir()
}

// cacheDirFor is cacheDir.dirFor for a command whose -cache flag is a plain string flag: value is the flag's
// value, used when it was given.
func cacheDirFor(fs *flag.FlagSet, value string, cfg *config.Config) string {
	c := &cacheDir{}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "cache" {
			c.dir, c.set = value, true
		}
	})
	return c.dirFor(cfg)
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
