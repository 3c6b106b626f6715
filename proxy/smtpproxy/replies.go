package smtpproxy

import "bytes"

// go-smtp answers a command given out of sequence (DATA before RCPT, RCPT before MAIL, MAIL before EHLO) with
// 502, "command not implemented". RFC 5321 §4.2.4 and Postfix answer 503, "bad sequence of commands", and a
// client tells the two apart: 502 means "do not try this command again". sequenceReply rewrites those replies as
// go-smtp writes them, one line per write; replies under TLS are encrypted before they reach the clientConn and
// keep go-smtp's code.
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
