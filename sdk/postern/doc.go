// Package postern is the Go SDK for Postern filter plugins.
//
// A plugin is a Go main package built as a WebAssembly reactor with the standard toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o subject-words.wasm .
//
// The host runs the package's init functions, not main, so a plugin registers its handlers in init and keeps
// an empty main. A complete plugin:
//
//	package main
//
//	import (
//		"strings"
//
//		"github.com/postern/postern/sdk/postern"
//	)
//
//	type config struct {
//		Words []string `json:"words"`
//	}
//
//	func init() {
//		var cfg config
//		postern.OnInit(func() error { return postern.Config(&cfg) })
//		postern.OnMessage(func(m *postern.Message) error {
//			subject := strings.ToLower(m.HeaderDecoded("Subject"))
//			for _, w := range cfg.Words {
//				if strings.Contains(subject, w) {
//					m.Tag("subject-word", w)
//					return m.Reject(550, "5.7.1", "subject not allowed")
//				}
//			}
//			return nil
//		})
//	}
//
//	func main() {}
//
// # Hooks and results
//
// OnInit runs once per instance; OnConnect, OnMailFrom, OnRcptTo and OnMessage once per event. A handler decides
// by calling a verdict method (Accept, Reject, Tempfail, Discard, Quarantine; none means accept) and returns nil.
// Returning an error, or panicking, is a plugin failure: the SDK logs the error, the hook returns non-zero, and
// the host discards the call's verdict, tags, score and changes and applies the plugin's on_error outcome
// (tempfail by default). So return errors for "I could not do my job", not for "this message is bad".
//
// Instances are reused for unrelated messages: keep configuration and compiled Patterns in globals, never
// message data.
//
// # Reading the message
//
// Nothing is pushed into the plugin. Each method asks the host for exactly what it needs (one header, the part
// list, a window of a part's decoded content), so a plugin that reads only the Subject never copies the body.
// Scanning is best done by the host: Compile a pattern set in OnInit and call Message.Match, or Message.SHA256,
// rather than looping over bytes in the plugin, which runs about ten times slower.
//
// # Errors
//
// Host functions fail with the Errno values ErrNotFound, ErrInvalid, ErrUnavailable and ErrDecode; compare with
// errors.Is. Out-of-range memory and exceeded budgets are not errors the plugin sees: the host aborts the call.
// A field the host does not know at this hook or in this protocol (the envelope sender when a POP3 or IMAP client
// reads a message, the HELO name at connect) is ErrUnavailable from Field, ok = false from the Lookup and mailbox
// accessors, never an empty value.
//
// # Testing
//
// The package compiles on every platform, so plugins can keep pure logic in ordinary Go files with ordinary unit
// tests. Outside WebAssembly every host call panics; to run a whole plugin, load it with Postern
// (`postern plugin test`).
//
// # Configuration
//
// Config (or DecodeConfig on ConfigJSON's bytes, which keeps parsing testable outside WebAssembly) decodes the
// plugin's JSON configuration strictly and reports mistakes in the configuration's words: `unknown key "acton"
// (known keys: action, code, score, text)`, `min_matches: want a whole number, got a string`. Action,
// CheckReplyCode and CheckReplyText are the shared handling of the usual action, code and text keys.
//
// # Module
//
// The SDK is a module of its own, github.com/postern/postern/sdk/postern, with no dependencies beyond the
// standard library, so that a plugin inherits neither the proxy's Go version nor its dependency graph.
// `postern plugin new NAME` writes a plugin folder whose go.mod points at a checkout's copy with a replace line.
//
// The ABI this package speaks is described in sdk/ABI.md.
package postern
