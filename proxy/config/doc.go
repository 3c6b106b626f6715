// Package config reads Postern's configuration: one HCL file and the files it includes, turned into typed
// listeners, plugins and policies, with every problem reported at its file:line:column.
//
// # Loading
//
// [Load] parses the root file, inlines each `include = [...]` at the place it is written (paths and globs
// relative to the including file; a glob's matches in name order), and decodes every block against a fixed
// schema, so an unknown block or attribute, a wrong type, an invalid enumeration value, a duplicate name, a
// policy naming an unknown plugin or an unreadable certificate is an error, never a silent default. It reads
// every plugin module and checks its sha256 pin; compiling and running the modules is the policy engine's job
// (proxy/policy.Build), which reports its failures through the same [Error] type. All problems of a file are
// collected before Load returns, ordered by file and position, so an admin fixes them in one pass.
//
// A [Config] is immutable. A reload loads the file again into a new Config; [Config.Version] (a SHA-256 over the
// files and the modules) tells whether anything changed and is recorded in every decision for the audit log.
//
// # when expressions
//
// A policy's `when` is an HCL expression over the variable `msg` (see [Facts]) and a fixed set of functions:
// part of go-cty's standard library, can/try, and mail functions (cidrmatch, domain_match, glob, header,
// headers, regex, regexall, regex_match, regex_replace, startswith, endswith, strcontains). It is checked at
// load time three ways, because evaluation alone hides mistakes: hcl's && and || drop the diagnostics of an
// operand they do not need, so `msg.size > 10 && msg.sise > 1` would quietly be false. Every variable reference
// is resolved against the msg schema; every function call is checked for a known name and for valid constant
// arguments (regular expressions are compiled then, once, and kept for the configuration's life; CIDRs and
// domain patterns are validated); and the expression and each && / || operand are evaluated with msg unknown,
// which type-checks every operation. The result must be a boolean.
//
// # Evaluation cost
//
// Policies are evaluated for every message and envelope stage. [Scope] builds the msg value once per message
// and shares it among the conditions, and conditions made only of comparisons, && / || / !, and the common
// string, domain, CIDR, regex and header functions are compiled at load into Go closures that skip hcl
// entirely (about a hundred nanoseconds instead of several microseconds each); the rest is evaluated by hcl.
// Both give the same result, which a differential test checks.
package config
