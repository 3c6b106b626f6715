// Command postern is the Postern mail filtering proxy: it runs the proxy, checks and explains configurations,
// tests plugins on single messages and verifies audit logs.
//
// Usage:
//
//	postern run -config FILE               run the proxy
//	postern check FILE                     validate a configuration
//	postern explain -config FILE MSG.eml   show what the policy does with one message
//	postern plugin test -plugin F.wasm MSG run one plugin on one message
//	postern plugin conformance KIT.wasm   check an SDK with its conformance kit plugin
//	postern audit verify PATH              check an audit log's hash chain
//	postern reload                         ask a running proxy to reload its configuration
//
// Each subcommand prints its own flags with -h.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand. Subcommands register themselves from their own files, so each lives beside the code
// it needs and main stays a dispatcher.
type command struct {
	name    string // as typed, possibly two words ("plugin test")
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch finds the longest registered command name that prefixes args and runs it, returning the exit status.
func dispatch(args []string, stdout, stderr io.Writer) int {
	for n := 2; n >= 1; n-- {
		if len(args) < n {
			continue
		}
		if c, ok := commands[strings.Join(args[:n], " ")]; ok {
			return c.run(args[n:], stdout, stderr)
		}
	}
	if len(args) > 0 && args[0] != "-h" && args[0] != "help" && args[0] != "--help" {
		fmt.Fprintf(stderr, "postern: unknown command %q\n\n", strings.Join(args, " "))
	}
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: postern COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].summary)
	}
}
