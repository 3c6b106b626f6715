// Package imapinterop tests the IMAP proxy against real peers: Dovecot as the upstream (internal/testdovecot),
// and python's imaplib, curl, mbsync (isync), imapflow (npm, locked in imapflow/), Dovecot's imaptest (built
// from imaptest/ by `make imaptest`) and Thunderbird as clients, each through `postern run` (the binary) and,
// as the reference, straight to Dovecot.
//
// The tools come from Debian packages that .ci/deps installs; a missing tool fails the test and names its
// package. Servers listen on free 127.0.0.1 ports and stop when each test ends.
package imapinterop
