package main

import (
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/postern/postern/proxy/pluginhost"
)

func init() {
	register(command{
		name:    "version",
		summary: "print the version, commit, Go version and plugin ABI version",
		run:     runVersion,
	})
}

// version is the release, set at link time (go build -ldflags "-X main.version=v1.2.3"; the Makefile sets it
// from git describe). Without it the module version from the build information is used: "(devel)" for a build
// from a checkout.
var version string

// commit is the VCS revision, set at link time like version (-X main.commit=...); without it the build
// information's vcs.revision is used.
var commit string

// buildInfo is what `postern version` prints and `postern run` logs at start-up.
type buildInfo struct {
	Version   string // release or "(devel)"
	Commit    string // VCS revision, "" when unknown; with "+dirty" when the tree had changes
	CommitAt  string // commit time (RFC 3339), "" when unknown
	GoVersion string
	ABI       int // the plugin ABI version this host implements
}

// readBuildInfo collects the version from the link-time variable and runtime/debug's build information (go build
// records the VCS revision of a checkout, -buildvcs).
func readBuildInfo() buildInfo {
	bi := buildInfo{Version: version, GoVersion: runtime.Version(), ABI: pluginhost.ABIVersion}
	info, ok := debug.ReadBuildInfo()
	if ok && commit == "" {
		var dirty bool
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				bi.Commit = s.Value
			case "vcs.time":
				bi.CommitAt = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && bi.Commit != "" {
			bi.Commit += "+dirty"
		}
	} else {
		bi.Commit = commit
	}
	if ok && bi.Version == "" {
		bi.Version = info.Main.Version
	}
	if bi.Version == "" {
		bi.Version = "(devel)"
	}
	return bi
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern version\n\nPrints the version, the commit it was built from, the Go version and the plugin ABI version.")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	bi := readBuildInfo()
	commit := bi.Commit
	if commit == "" {
		commit = "unknown (built without VCS information)"
	}
	fmt.Fprintf(stdout, "postern %s\ncommit:     %s\n", bi.Version, commit)
	if bi.CommitAt != "" {
		fmt.Fprintf(stdout, "committed:  %s\n", bi.CommitAt)
	}
	fmt.Fprintf(stdout, "go:         %s\nplugin ABI: %d\n", bi.GoVersion, bi.ABI)
	return 0
}
