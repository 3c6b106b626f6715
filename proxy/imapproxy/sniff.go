package imapproxy

import (
	"bytes"
	"net"
	"strconv"
	"sync/atomic"
)

// sniffer reads, on the upstream connection, the two responses imapclient drops: `* n RECENT` and
// `* OK [UNSEEN n]`. It follows the stream line by line and skips every literal (a line that ends in {n} is
// followed by n bytes of data), so that message content is never read as a response. Reading them here costs
// nothing; asking for them again would cost a command per SELECT.
//
// A line of free text that happens to end in "{n}" (a server's resp-text) would make it skip the next n bytes:
// the counts would be missed until the next line, never invented from content, since a literal cannot start a
// line the sniffer reads as a response.
type sniffer struct {
	net.Conn
	pre []byte // served before the connection's bytes (a greeting after a hand-made STARTTLS)

	lit  int64  // bytes of a literal still to skip
	head []byte // the start of the current line, up to sniffHead bytes
	tail []byte // the end of the current line, up to sniffTail bytes

	recent atomic.Int64 // the last RECENT count, -1 before any
	unseen atomic.Int64 // the last [UNSEEN n], -1 before any
}

const (
	sniffHead = 48 // "* OK [UNSEEN 4294967295]" and "* 4294967295 RECENT\r\n" fit
	sniffTail = 24 // "{18446744073709551615}\r\n" fits
)

func newSniffer(c net.Conn, pre string) *sniffer {
	s := &sniffer{Conn: c, pre: []byte(pre)}
	s.recent.Store(-1)
	s.unseen.Store(-1)
	return s
}

func (s *sniffer) Read(p []byte) (int, error) {
	if len(s.pre) > 0 {
		n := copy(p, s.pre)
		s.pre = s.pre[n:]
		s.scan(p[:n])
		return n, nil
	}
	n, err := s.Conn.Read(p)
	s.scan(p[:n])
	return n, err
}

// reset forgets the counts, before a command whose answer brings new ones (SELECT).
func (s *sniffer) reset() {
	s.recent.Store(-1)
	s.unseen.Store(-1)
}

func (s *sniffer) scan(b []byte) {
	for len(b) > 0 {
		if s.lit > 0 {
			k := int64(len(b))
			if k > s.lit {
				k = s.lit
			}
			s.lit -= k
			b = b[k:]
			continue
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.add(b)
			return
		}
		s.add(b[:i+1])
		b = b[i+1:]
		s.line()
	}
}

func (s *sniffer) add(b []byte) {
	if room := sniffHead - len(s.head); room > 0 {
		s.head = append(s.head, b[:min(room, len(b))]...)
	}
	if len(b) >= sniffTail {
		s.tail = append(s.tail[:0], b[len(b)-sniffTail:]...)
		return
	}
	s.tail = append(s.tail, b...)
	if over := len(s.tail) - sniffTail; over > 0 {
		s.tail = s.tail[:copy(s.tail, s.tail[over:])]
	}
}

// line looks at a complete line: a response the sniffer reads, and a literal announced at its end.
func (s *sniffer) line() {
	head, tail := s.head, s.tail
	s.head, s.tail = s.head[:0], s.tail[:0]
	if rest, ok := bytes.CutPrefix(head, []byte("* ")); ok {
		if n, ok := bytes.CutSuffix(rest, []byte(" RECENT\r\n")); ok {
			if v, err := strconv.ParseUint(string(n), 10, 32); err == nil {
				s.recent.Store(int64(v))
			}
		} else if n, ok := bytes.CutPrefix(rest, []byte("OK [UNSEEN ")); ok {
			if j := bytes.IndexByte(n, ']'); j > 0 {
				if v, err := strconv.ParseUint(string(n[:j]), 10, 32); err == nil {
					s.unseen.Store(int64(v))
				}
			}
		}
	}
	if t, ok := bytes.CutSuffix(tail, []byte("}\r\n")); ok {
		if j := bytes.LastIndexByte(t, '{'); j >= 0 {
			if v, err := strconv.ParseInt(string(t[j+1:]), 10, 64); err == nil && v > 0 {
				s.lit = v
			}
		}
	}
}
