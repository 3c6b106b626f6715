// Package pop3 is Postern's POP3 codec, used on both sides of the proxy: reading commands and writing responses
// towards a client (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH), and writing commands and reading
// responses towards an upstream server.
//
// It knows the wire format and nothing of sessions: lines are bounded (a longer one is ErrLineTooLong, and the
// reader stays usable only to close the connection), multi-line responses are dot-stuffed and unstuffed with
// every line ending kept (mailflow.DotStuffer and mailflow.DotReader; net/textproto's DotReader turns CRLF into
// LF, which would change a message's bytes), and response codes (RFC 2449 §8, RFC 3206) are parsed out of status
// lines.
package pop3
