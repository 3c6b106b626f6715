package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/sdk/conformance"
)

func init() {
	register(command{
		name:    "plugin conformance",
		summary: "run an SDK's conformance kit plugin against this host's ABI (sdk/conformance)",
		run:     runConformance,
	})
}

// runConformance runs a kit plugin (see sdk/conformance/README.md) through the plugin host on the kit's fixed
// message and sessions, which are built into the binary, and lists every difference from the expected results.
// An SDK outside this repository proves itself with the postern binary alone, as http-wasm's TCK does.
func runConformance(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern plugin conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postern plugin conformance KIT.wasm")
		fmt.Fprintln(stderr, "\nRuns a conformance kit plugin (sdk/conformance/README.md) on the kit's fixed input and")
		fmt.Fprintln(stderr, "reports every check that differs. Exit status 0: the SDK conforms; 1: it does not; 2: usage.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	path := fs.Arg(0)
	wasm, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "postern plugin conformance: %v\n", err)
		return 1
	}
	ctx := context.Background()
	host, err := pluginhost.NewHost(ctx, pluginhost.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "postern plugin conformance: %v\n", err)
		return 1
	}
	defer host.Close(ctx)
	res, err := conformance.Run(ctx, host, "kit", wasm)
	if err != nil {
		fmt.Fprintf(stderr, "postern plugin conformance: %s: %v\n", path, err)
		return 1
	}
	for _, f := range res.Failures {
		fmt.Fprintln(stdout, "FAIL", f)
	}
	if len(res.Failures) > 0 {
		fmt.Fprintf(stdout, "%s: %d of %d checks failed (fixtures:", path, len(res.Failures), res.Checks)
		for _, fx := range conformance.Fixtures {
			fmt.Fprintf(stdout, " %s", fx.Name)
		}
		fmt.Fprintln(stdout, ")")
		return 1
	}
	fmt.Fprintf(stdout, "%s: conforms to plugin ABI v1 (%d checks in %d fixtures)\n", path, res.Checks, len(conformance.Fixtures))
	return 0
}
