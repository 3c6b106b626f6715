package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/control"
)

func init() {
	register(command{
		name:    "reload",
		summary: "ask a running proxy to reload its configuration",
		run:     runReload,
	})
}

// runReload sends "reload" to a running proxy's control socket, found from the configuration (control_socket, or
// state_dir/control.sock) or given with -socket. The reply is printed: the new version, or the diagnostics of a
// refused configuration (exit 1; the proxy keeps its current one).
func runReload(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern reload [-status] (-config FILE.hcl | -socket PATH)")
		fs.PrintDefaults()
	}
	var (
		configPath = fs.String("config", "", "the running proxy's configuration `FILE`, to find its control socket")
		socket     = fs.String("socket", "", "the control socket `PATH`")
		timeout    = fs.Duration("timeout", time.Minute, "how long to wait for the reload (default: the file's reload_timeout and 10s more with -config, else 1m)")
		status     = fs.Bool("status", false, "print what the proxy is serving instead of reloading")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 || (*configPath == "") == (*socket == "") {
		fs.Usage()
		return 2
	}
	path := *socket
	switch {
	case path != "":
	case *status:
		// The status is asked for exactly when the file may not load (an edit in progress, a refused reload):
		// only the control socket's location is needed from it.
		var err error
		if path, err = config.ControlSocket(*configPath); err != nil {
			fmt.Fprintf(stderr, "postern reload: cannot find the control socket in %s:\n", *configPath)
			return reportConfigError(stderr, err)
		}
	default:
		// A file that does not load would be refused by the proxy too: say so here, with the same diagnostics,
		// and leave the proxy alone.
		cfg, err := config.Load(*configPath)
		if err != nil {
			fmt.Fprintln(stderr, "postern reload: not sent: the configuration does not load; the proxy keeps serving its current one")
			return reportConfigError(stderr, err)
		}
		if !flagSet(fs, "timeout") {
			// The proxy answers within its reload_timeout: wait a little longer, so its answer is what is shown.
			*timeout = cfg.ReloadTimeout + 10*time.Second
		}
		path = cfg.ControlSocket
	}
	if path == "" {
		fmt.Fprintf(stderr, "postern reload: %s has neither control_socket nor state_dir: the proxy has no control socket (send it SIGHUP)\n", *configPath)
		return 1
	}
	cmd := "reload"
	if *status {
		cmd = "status"
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	reply, err := control.Send(ctx, path, cmd)
	if err != nil {
		fmt.Fprintf(stderr, "postern reload: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, reply)
	return 0
}

// flagSet reports whether the flag was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
