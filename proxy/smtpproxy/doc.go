// Package smtpproxy is Postern's SMTP and submission front end: a relay between mail clients (or other MTAs) and
// an existing SMTP server, the upstream, that runs every message through the policy before the upstream sees it.
//
// It holds what is SMTP: the go-smtp backend, the transaction, XCLIENT, AUTH, the DATA fast path, reply codes and
// the Received: field. The filtering of a message (spool, line guard, policy, quarantine, rendering, result
// headers, the audit record) is package mailflow's; accepting connections, the session limit, the PROXY protocol,
// certificates and shutdown are package listener's; the dial and upstream TLS are package upstream's.
//
// # Relay semantics
//
// Each client session has exactly one upstream connection. It is opened as soon as the client connects, while
// the client reads the greeting, so that its cost is hidden behind the client's first round trip; the client's
// EHLO waits for it, and a session whose upstream cannot be reached (or refuses the relay, or fails TLS
// verification) is answered 421 and closed. Nothing is ever accepted without an upstream.
//
// MAIL FROM and RCPT TO are relayed in lockstep: the policy's envelope hooks run first (a refusal never reaches
// the upstream), then the command goes upstream and the upstream's refusal (code, enhanced code, text) goes back
// to the client unchanged. go-smtp writes its own text for a successful MAIL or RCPT; the DATA reply is always
// the upstream's own, text included.
//
// DATA, and BDAT (relayed as DATA, since neither go-smtp's client nor most upstreams do BDAT), is read completely
// before anything is sent on: into memory up to Options.MemoryThreshold, then into an unlinked temporary file,
// bounded by Limits.MessageSize. The message is indexed by package message, the policy decides, and only then
// does the relay open DATA upstream and send the message with the policy's changes applied by splicing (bytes no
// change touches are copied verbatim; a message nothing changed goes out byte for byte). The client's final reply
// is the upstream's reply to that message: never a 250 before the upstream's 250. If the upstream fails or drops
// the connection at any point, the client gets a 4xx and the session ends.
//
// Reject and tempfail verdicts answer with the policy's code and text and reset the upstream transaction; discard
// answers 250 without sending anything upstream; quarantine stores the message as received and its decision as
// JSON in Options.QuarantineDir (mailflow.Quarantine). Every message decision, and every envelope-stage refusal,
// is appended to the audit log with the reply the client got. Recipients a plugin adds are sent upstream (RCPT TO) just before DATA; if the upstream refuses one,
// the message is deferred rather than delivered without it.
//
// # Extensions and limits
//
// The relay advertises PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, CHUNKING and SIZE (the smaller of its own
// limit and the upstream's), and DSN, SMTPUTF8, REQUIRETLS, RRVS, DELIVERBY and MT-PRIORITY only when the upstream
// offers them, so their parameters pass through; any other parameter gets a 5xx. For that, each connection has
// its own go-smtp server, configured when the upstream's EHLO reply is known.
//
// Limits: concurrent sessions (421 past them), recipients per message (452), line length (500 and the session
// ends), message size (552), an idle timeout between commands and a command timeout for each wait inside one
// (client progress during DATA, every upstream reply), and the number of error replies per session (the one that
// reaches it becomes a closing 421). go-smtp also closes a session after its fourth syntax error.
//
// # SMTP smuggling
//
// The only end of DATA is CRLF.CRLF, and go-smtp's reader honours that, but it passes bare CR and bare LF
// through, and some upstreams take them for line ends: an end-of-data lookalike such as LF.LF could end the
// message there and smuggle the rest as a second transaction. A message containing a bare CR, a bare LF or a NUL
// is therefore refused with 550 5.6.0 (BareNewlineReject, the default, which keeps messages byte-identical) or
// rewritten with CRLF line ends and without NULs (BareNewlineNormalize). Either way only CRLF line ends reach the
// upstream, and the relay's own dot-stuffing is then exact.
//
// # TLS and authentication
//
// Clients get STARTTLS or implicit TLS (TLS 1.2 at least; the certificate is reloaded by ReloadCertificate).
// Commands a client pipelines behind STARTTLS are discarded with the plain-text buffer when TLS starts, never
// answered inside TLS (the CVE-2011-0411 class); tests send both classic payloads. The upstream connection is
// plain, STARTTLS or TLS, with certificate verification on unless explicitly turned off. AUTH PLAIN and LOGIN
// are relayed to the upstream's AUTH (translated to whichever the upstream offers): the client is authenticated
// exactly when the upstream says so, and AUTH is offered only under TLS unless Options.AllowInsecureAuth.
//
// Behind a load balancer, the PROXY protocol (v1 and v2) gives the real client address, accepted only from
// Options.ProxyProtocol.Trusted; with Options.XClient a Postfix upstream is told the client's address and HELO.
//
// # Shutdown and performance notes
//
// Shutdown stops accepting, closes idle sessions with 421 (each written on its own goroutine, never under a lock)
// and lets messages in flight finish until its context ends; a cut session's plugin calls are cancelled. Reply lines are coalesced into one write per reply, or per group of pipelined commands (go-smtp flushes
// every line); writes to the upstream are held until its reply is awaited, so a message and its final dot go out
// in one write; TCP keep-alives are off (the timeouts bound every session); deadlines are moved only when they
// would move by more than a 32nd of the timeout (at most a second); and on a plain-text connection message content
// is read by the relay in 32 KiB reads and unstuffed in bulk, instead of by go-smtp a byte at a time, then
// dot-stuffed in bulk on the way out. The line-ending check is a few vectorised scans per read.
package smtpproxy
