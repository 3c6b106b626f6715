package imapproxy

import (
	"testing"
)

func TestSniffer(t *testing.T) {
	for _, tc := range []struct {
		name           string
		stream         string
		recent, unseen int64
	}{
		{"select", "* 3 EXISTS\r\n* 2 RECENT\r\n* OK [UNSEEN 2] First unseen.\r\n* OK [UIDVALIDITY 7]\r\nA1 OK done\r\n", 2, 2},
		{"none", "* 3 EXISTS\r\nA1 OK done\r\n", -1, -1},
		// A literal is skipped whatever it holds: a message whose lines look like responses.
		{"literal", "* 1 FETCH (BODY[] {30}\r\n* 9 RECENT\r\n* OK [UNSEEN 9]\r\n)\r\n* 1 RECENT\r\n", 1, -1},
		{"literal at a read boundary", "* 1 FETCH (BODY[] {12}\r\n* 9 RECENT\r\n)\r\n", -1, -1},
		{"literal8", "* 1 FETCH (BINARY[] ~{12}\r\n* 9 RECENT\r\n)\r\n* 4 RECENT\r\n", 4, -1},
		{"two literals on a line", "* LIST () \"/\" {3}\r\nabc\r\n* 1 FETCH (ENVELOPE (NIL {12}\r\n* 7 RECENT\r\n NIL))\r\n", -1, -1},
		{"long line", "* SEARCH 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20\r\n* 5 RECENT\r\n", 5, -1},
	} {
		// Fed byte by byte and in one piece: the result does not depend on how the stream was read.
		for _, step := range []int{1, 7, len(tc.stream)} {
			s := newSniffer(nil, "")
			for i := 0; i < len(tc.stream); i += step {
				s.scan([]byte(tc.stream[i:min(i+step, len(tc.stream))]))
			}
			if r, u := s.recent.Load(), s.unseen.Load(); r != tc.recent || u != tc.unseen {
				t.Errorf("%s, read %d bytes at a time: RECENT %d, UNSEEN %d; want %d, %d", tc.name, step, r, u, tc.recent, tc.unseen)
			}
		}
	}
}
