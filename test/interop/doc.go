// Package interop tests Postern's SMTP relay against real peers: Postfix's smtp-sink as the upstream (its -D dump
// counts what arrived), and swaks, curl and Python's smtplib as clients, over plain text, STARTTLS and implicit
// TLS, with AUTH relayed to an upstream that checks passwords, and every SMTP smuggling vector and STARTTLS
// injection payload sent by a client that is not Go.
//
// The tools come from Debian packages (postfix, swaks, curl, python3); .ci/run installs them. A missing tool fails
// the tests and names its package: the suite never skips. Servers are started on free 127.0.0.1 ports and
// stopped when each test ends.
package interop
