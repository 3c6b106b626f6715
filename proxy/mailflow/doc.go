// Package mailflow is Postern's protocol-neutral "filter one message" pipeline. Every front end (the SMTP relay
// today; retrieval front ends are written against the same calls) uses it the same way:
//
//   - Flow.Open acquires the policy snapshot current when the client connects; the Session keeps it for its whole
//     life, and its context is the one every plugin call runs under, so that a chain stops when the client goes
//     or the session is cut off at shutdown.
//   - Session.Stage runs an envelope or login stage (connect, MAIL FROM, RCPT TO) and returns its decision; the
//     front end answers a refusal in its protocol and records it with Session.Record and the reply it gave.
//   - Session.Receive spools the message (in memory up to a threshold, then in an unlinked temporary file) through
//     the line guard, which refuses or repairs bare CR, bare LF and NUL, and bounds its size.
//   - Session.Message indexes the message, runs the policy (or carries out a decision pending from an envelope
//     stage), stores a quarantined message in the Quarantine, and for an accepted one renders the policy's
//     changes, the result headers and the front end's trace fields. The Outcome holds the decision, the action,
//     the bytes to serve or send on (the original, or the rendered change) and the digests of both.
//   - The front end maps the Outcome to its protocol's reply, and Outcome.Record appends the audit record with the
//     reply the client actually got.
//
// The package also holds what the protocols share on the wire: dot-stuffing (DotStuffer) and dot-unstuffing
// (DotReader) with CRLF kept, the line guard, and ReplyText, which makes a policy's text safe for one reply line.
// Scores are bounded (BoundScores) as soon as a decision is made, so that headers, the quarantine record and the
// audit log never carry an infinity or a NaN.
package mailflow
