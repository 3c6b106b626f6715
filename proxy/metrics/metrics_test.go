package metrics

import "testing"

func TestReplyClass(t *testing.T) {
	for _, c := range []struct {
		status string
		code   int
		want   string
	}{
		{"", 250, "2xx"}, {"", 451, "4xx"}, {"", 554, "5xx"}, {"", 0, "none"}, {"", 99, "other"},
		{"+OK", 0, "+OK"}, {"-ERR", 0, "-ERR"}, {"OK", 0, "OK"}, {"NO", 0, "NO"}, {"BAD", 0, "BAD"},
		{"BYE", 0, "BYE"}, {"* weird", 0, "other"},
	} {
		if got := ReplyClass(c.status, c.code); got != c.want {
			t.Errorf("ReplyClass(%q, %d) = %q, want %q", c.status, c.code, got, c.want)
		}
	}
}
