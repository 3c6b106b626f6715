package smtpproxy

import (
	"bytes"
	"strconv"
	"sync/atomic"
)

// go-smtp answers a command given out of sequence (DATA before RCPT, RCPT before MAIL, MAIL before EHLO) with
// 502, "command not implemented". RFC 5321 §4.2.4 and Postfix answer 503, "bad sequence of commands", and a
// client tells the two apart: 502 means "do not try this command again". sequenceReply rewrites those replies as
// go-smtp writes them, one line per write.
var outOfSequence = [][]byte{
	[]byte("502 5.5.1 Missing RCPT TO command.\r\n"),
	[]byte("502 5.5.1 Missing MAIL FROM command.\r\n"),
	[]byte("502 5.5.1 Please introduce yourself first.\r\n"),
	[]byte("502 5.5.1 MAIL not allowed during message transfer\r\n"),
	[]byte("502 5.5.1 RCPT not allowed during message transfer\r\n"),
	[]byte("502 5.5.1 DATA not allowed during message transfer\r\n"),
}

func sequenceReply(p []byte) []byte {
	if len(p) < 10 || p[0] != '5' || p[1] != '0' || p[2] != '2' {
		return p
	}
	for _, r := range outOfSequence {
		if bytes.Equal(p, r) {
			return append([]byte("503"), p[3:]...)
		}
	}
	return p
}

// replyRewriter completes what go-smtp writes, one reply line per write, with what the relay does itself:
//
//   - STARTTLS. go-smtp is given no TLS configuration (the relay does TLS below it, so that it sees the plain text
//     both ways: tlsView), so it neither offers STARTTLS nor accepts it. The relay adds STARTTLS to the EHLO reply
//     of a plain-text session of a STARTTLS listener, and turns go-smtp's refusal of the command ("502 5.5.1 TLS
//     not supported", which go-smtp writes only for a STARTTLS command it parsed) into "220 2.0.0 Ready to start
//     TLS", after which the connection is handed over (clientConn.handover).
//   - REQUIRETLS, which go-smtp offers only on a connection it knows is TLS, is added inside TLS when the upstream
//     offers it.
//   - SIZE. go-smtp refuses a MAIL FROM SIZE= and a BDAT chunk over its limit itself, without calling the relay,
//     so nothing would log or record the refusal: it is given no limit, and the relay enforces it (session.Mail,
//     session.Data) and writes the limit into the EHLO reply's SIZE line.
//   - replies to commands out of sequence get 503 (sequenceReply).
//
// The EHLO lines it looks for have no enhanced status code, and every other 250 reply go-smtp writes has one, so
// no other reply matches them.
type replyRewriter struct {
	offerSTARTTLS atomic.Bool
	inTLS         atomic.Bool
	requireTLS    atomic.Bool
	size          atomic.Int64 // the message size limit; 0: none
}

var (
	ehloChunking    = []byte("250-CHUNKING\r\n")
	ehloSize        = []byte("SIZE\r\n")
	refusedSTARTTLS = []byte("502 5.5.1 TLS not supported\r\n")
	readySTARTTLS   = []byte("220 2.0.0 Ready to start TLS\r\n")
)

// rewrite returns the line to send for p; startTLS is true when it is the answer to STARTTLS.
func (r *replyRewriter) rewrite(p []byte) (out []byte, startTLS bool) {
	if r == nil {
		return sequenceReply(p), false
	}
	switch {
	case len(p) < 4:
		return p, false
	case bytes.Equal(p, ehloChunking):
		if r.offerSTARTTLS.Load() {
			return append(bytes.Clone(p), "250-STARTTLS\r\n"...), false
		}
	case p[0] == '2' && p[1] == '5' && p[2] == '0' && (p[3] == '-' || p[3] == ' ') && bytes.Equal(p[4:], ehloSize):
		var b []byte
		if r.requireTLS.Load() {
			b = append(b, "250-REQUIRETLS\r\n"...)
		}
		b = append(b, p[:8]...)
		if n := r.size.Load(); n > 0 {
			b = append(append(b, ' '), strconv.FormatInt(n, 10)...)
		}
		return append(b, "\r\n"...), false
	case bytes.Equal(p, refusedSTARTTLS):
		if r.offerSTARTTLS.Load() {
			r.offerSTARTTLS.Store(false)
			return readySTARTTLS, true
		}
		if r.inTLS.Load() {
			// As Postfix answers.
			return []byte("554 5.5.1 Error: TLS already active\r\n"), false
		}
	}
	return sequenceReply(p), false
}

// connErrorLog is go-smtp's error log for one connection. go-smtp reports the error that ended a connection,
// which for a client that connected and left without a word (a load balancer's health check, a port scan) is a
// write or read error on a socket nobody will ever read again: serveConn counts those sessions and logs them at
// debug level, so they are not warnings here.
type connErrorLog struct{ cs *connState }

func (l connErrorLog) Printf(format string, v ...any) {
	if l.cs.client.heard.Load() {
		slogErrorLog{l.cs.log()}.Printf(format, v...)
	}
}

func (l connErrorLog) Println(v ...any) {
	if l.cs.client.heard.Load() {
		slogErrorLog{l.cs.log()}.Println(v...)
	}
}

// EarlyDisconnects is the number of client connections that ended before the client sent anything (health checks
// of load balancers, port scans). They are logged at debug level only.
func (s *Server) EarlyDisconnects() uint64 { return s.earlyDisconnects.Load() }
