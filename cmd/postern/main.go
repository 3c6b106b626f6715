// Command postern is the Postern mail filtering proxy: it runs the proxy, checks and explains configurations,
// tests plugins on single messages and verifies audit logs.
//
// Usage:
//
//	postern run -config FILE                  run the proxy
//	postern check -config FILE                validate a configuration
//	postern explain -config FILE MSG.eml      show what the policy does with one message
//	postern plugin new NAME                   write a ready-to-build plugin folder
//	postern plugin test -plugin F.wasm MSG    run one plugin on one message
//	postern plugin conformance KIT.wasm       check an SDK with its conformance kit plugin
//	postern audit verify PATH                 check an audit log's hash chain
//	postern audit accept-truncation           continue an audit log that lost records, on record
//	postern audit search -config FILE         search the audit index for decisions
//	postern audit reindex -config FILE        rebuild the audit index from the audit log
//	postern reload -config FILE               ask a running proxy to reload its configuration
//	postern quarantine list -config FILE      list quarantined messages (filters, -json)
//	postern quarantine show -config FILE ID   show a quarantined message's record, or the message
//	postern quarantine release|delete ID      release or delete a quarantined message, on record
//	postern version                           print the version
//	postern help [COMMAND]                    print the usage of postern or of a command
//
// `postern COMMAND -h` prints a command's flags. Help goes to standard output with exit status 0; a wrong
// command or flag prints the usage to standard error with exit status 2, as go, git and kubectl do.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand. Subcommands register themselves from their own files (an init function calling
// register), so each lives beside the code it needs and main stays a dispatcher.
type command struct {
	name    string // as typed, possibly two words ("plugin test"); the first word of a two-word name is a group
	summary string
	// run runs the command with the arguments after its name and returns the exit status: 0 success, 1 failure,
	// 2 usage error. It prints its usage, with its flags, to stderr when given -h; dispatch passes stdout as
	// stderr for a help request, so help lands on standard output.
	run func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// isHelpFlag reports whether arg asks for help the way Go's flag package understands it.
func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "--h"
}

// dispatch finds the longest registered command name that prefixes args and runs it, returning the exit status.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch {
	case isHelpFlag(args[0]):
		usage(stdout)
		return 0
	case args[0] == "--version" || args[0] == "-version":
		return runVersion(args[1:], stdout, stderr)
	case args[0] == "help":
		return help(args[1:], stdout, stderr)
	}
	for n := 2; n >= 1; n-- {
		if len(args) < n {
			continue
		}
		if c, ok := commands[strings.Join(args[:n], " ")]; ok {
			if wantsHelp(args[n:]) {
				return commandHelp(c, stdout)
			}
			return c.run(args[n:], stdout, stderr)
		}
	}
	if group := groupCommands(args[0]); len(group) > 0 {
		if len(args) > 1 && isHelpFlag(args[1]) {
			groupUsage(stdout, args[0], group)
			return 0
		}
		if len(args) > 1 {
			fmt.Fprintf(stderr, "postern: unknown command %q\n\n", strings.Join(args[:2], " "))
		}
		groupUsage(stderr, args[0], group)
		return 2
	}
	fmt.Fprintf(stderr, "postern: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// wantsHelp reports whether a command's arguments ask for its help: a help flag before any "--" or positional
// argument, where the flag package would stop looking for flags. A flag value that happens to be "-h" would be
// taken for a help request; no Postern flag takes such a value.
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelpFlag(a) {
			return true
		}
	}
	return false
}

// commandHelp prints c's usage to stdout and returns 0.
func commandHelp(c command, stdout io.Writer) int {
	c.run([]string{"-h"}, io.Discard, stdout)
	return 0
}

// help is `postern help [COMMAND]`.
func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return 0
	}
	if c, ok := commands[strings.Join(args, " ")]; ok {
		return commandHelp(c, stdout)
	}
	if group := groupCommands(args[0]); len(group) > 0 && len(args) == 1 {
		groupUsage(stdout, args[0], group)
		return 0
	}
	fmt.Fprintf(stderr, "postern help: unknown command %q\n\n", strings.Join(args, " "))
	usage(stderr)
	return 2
}

// groupCommands returns the sorted names of the two-word commands whose first word is group.
func groupCommands(group string) []string {
	var names []string
	for n := range commands {
		if first, _, ok := strings.Cut(n, " "); ok && first == group {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

func groupUsage(w io.Writer, group string, names []string) {
	fmt.Fprintf(w, "usage: postern %s COMMAND [flags] [args]\n\ncommands:\n", group)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'postern %s COMMAND -h' for a command's flags.\n", group)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: postern COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands)+1)
	for n := range commands {
		names = append(names, n)
	}
	names = append(names, "help")
	sort.Strings(names)
	for _, n := range names {
		summary := "print the usage of postern or of a command (postern help COMMAND)"
		if c, ok := commands[n]; ok {
			summary = c.summary
		}
		fmt.Fprintf(w, "  %-16s %s\n", n, summary)
	}
	fmt.Fprintln(w, "\nRun 'postern COMMAND -h' for a command's flags, 'postern version' for the version.")
}
