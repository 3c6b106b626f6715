package pop3proxy

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/pop3"
)

// TestUpstreamFaults: whatever the upstream does wrong in the middle of a RETR, the client gets -ERR [SYS/TEMP]
// (or [SYS/PERM] for a message too large to filter), the session ends, and nothing is deleted.
func TestUpstreamFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(c net.Conn)
		edit  func(*Options)
		code  string
	}{
		{name: "drop mid-RETR", fault: func(c net.Conn) {
			c.Write([]byte("+OK\r\nSubject: half\r\n\r\nthe first half"))
			c.Close()
		}},
		{name: "garbage", fault: func(c net.Conn) { c.Write([]byte("HTTP/1.1 400 Bad Request\r\n")) }},
		{name: "10 MB status line", fault: func(c net.Conn) {
			c.Write([]byte("+OK " + strings.Repeat("x", 10<<20) + "\r\n"))
		}},
		{name: "10 MB line in the message", edit: func(o *Options) { o.Limits.MessageSize = 1 << 20 }, fault: func(c net.Conn) {
			c.Write([]byte("+OK\r\nSubject: x\r\n\r\n" + strings.Repeat("x", 10<<20) + "\r\n.\r\n"))
		}},
		{name: "stall", edit: func(o *Options) { o.Limits.CommandTimeout = 300 * time.Millisecond }, fault: func(c net.Conn) {
			time.Sleep(5 * time.Second)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newTestUpstream(t)
			up.setMessages("alice", msg1, msg2)
			up.fault = func(c net.Conn, cmd pop3.Command) bool {
				if cmd.Name != "RETR" || cmd.Args[0] != "2" {
					return false
				}
				tc.fault(c)
				return true
			}
			r := newRig(t, up, tc.edit)
			c := r.dial()
			c.login()
			c.ok("DELE 1")
			resp := c.cmd("RETR 2")
			if resp.OK || resp.Code != pop3.CodeSysTemp {
				t.Fatalf("RETR 2: %s", resp.Line())
			}
			if !c.closed() {
				t.Fatal("the session went on after the upstream failed")
			}
			time.Sleep(50 * time.Millisecond)
			if d := up.deletedOf("alice"); len(d) != 0 {
				t.Fatalf("deleted %v after an upstream failure", d)
			}
		})
	}
}

func TestMessageTooLargeToFilter(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1, "Subject: big\r\n\r\n"+strings.Repeat("y", 4000)+"\r\n")
	r := newRig(t, up, func(o *Options) { o.Limits.MessageSize = 2048 })
	c := r.dial()
	c.login()
	if resp := c.cmd("RETR 2"); resp.OK || resp.Code != pop3.CodeSysPerm {
		t.Fatalf("RETR of a message over the limit: %s", resp.Line())
	}
	if got := c.retr("1"); got != msg1 {
		t.Fatal("the session did not go on")
	}
	if up.retrCount() != 1 {
		t.Fatal("the message over the limit was fetched")
	}
}

func TestUpstreamDownAtConnect(t *testing.T) {
	up := newTestUpstream(t)
	r := newRig(t, up, nil)
	up.ln.Close()
	n, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	resp, err := pop3.NewClient(n, 1024).ReadResponse()
	if err != nil || resp.OK || resp.Code != pop3.CodeSysTemp {
		t.Fatalf("greeting: %+v %v", resp, err)
	}
}

func TestSessionBounds(t *testing.T) {
	up := newTestUpstream(t)
	t.Run("line length", func(t *testing.T) {
		r := newRig(t, up, nil)
		c := r.dial()
		resp := c.cmd("USER " + strings.Repeat("a", 70<<10))
		if resp.OK || !strings.Contains(resp.Text, "too long") || !c.closed() {
			t.Fatalf("a 70 KiB command: %s", resp.Line())
		}
	})
	t.Run("command rate", func(t *testing.T) {
		r := newRig(t, up, func(o *Options) { o.Limits.CommandRate = 1 })
		c := r.dial()
		c.login()
		c.n.Write([]byte(strings.Repeat("NOOP\r\n", 50)))
		var last pop3.Response
		for i := 0; i < 50; i++ {
			resp, err := c.c.ReadResponse()
			if err != nil {
				break
			}
			last = resp
		}
		if last.OK || last.Code != pop3.CodeSysTemp || !strings.Contains(last.Text, "Too many commands") {
			t.Fatalf("50 commands at once at a rate of 1/s: the last reply %s", last.Line())
		}
	})
	t.Run("session time", func(t *testing.T) {
		r := newRig(t, up, func(o *Options) { o.Limits.SessionTime = 300 * time.Millisecond })
		c := r.dial()
		c.login()
		resp := c.status() // unasked: the limit passed while the client was silent
		if resp.OK || resp.Code != pop3.CodeSysTemp || !strings.Contains(resp.Text, "Session time") {
			t.Fatalf("session time: %s", resp.Line())
		}
	})
	t.Run("idle", func(t *testing.T) {
		r := newRig(t, up, func(o *Options) { o.Limits.IdleTimeout = 200 * time.Millisecond })
		c := r.dial()
		if resp := c.status(); resp.OK || !strings.Contains(resp.Text, "inactivity") {
			t.Fatalf("idle: %s", resp.Line())
		}
	})
	t.Run("errors", func(t *testing.T) {
		r := newRig(t, up, func(o *Options) { o.Limits.Errors = 3 })
		c := r.dial()
		c.cmd("FOO")
		c.cmd("BAR")
		if resp := c.cmd("BAZ"); resp.OK || !strings.Contains(resp.Text, "Too many errors") || !c.closed() {
			t.Fatalf("third error: %s", resp.Line())
		}
	})
	t.Run("sessions", func(t *testing.T) {
		r := newRig(t, up, func(o *Options) { o.Limits.Sessions = 1 })
		r.dial()
		n, _ := net.Dial("tcp", r.addr)
		defer n.Close()
		if resp, err := pop3.NewClient(n, 1024).ReadResponse(); err != nil || resp.OK || resp.Code != pop3.CodeSysTemp {
			t.Fatalf("second session: %+v %v", resp, err)
		}
	})
}

func TestShutdownBetweenCommands(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1)
	r := newRig(t, up, nil)
	c := r.dial()
	c.login()
	c.ok("DELE 1")
	go r.srv.Shutdown(t.Context())
	resp := c.status()
	if resp.OK || resp.Code != pop3.CodeSysTemp {
		t.Fatalf("at shutdown: %s", resp.Line())
	}
	time.Sleep(50 * time.Millisecond)
	if d := up.deletedOf("alice"); len(d) != 0 {
		t.Fatalf("shutdown deleted %v", d)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestSlowPolicyIsBounded: a policy that does not decide within command_timeout gets the client a clear
// -ERR [SYS/TEMP], the record says so, and nothing is deleted.
func TestSlowPolicyIsBounded(t *testing.T) {
	up := newTestUpstream(t)
	up.setMessages("alice", msg1, msg2)
	r := newRig(t, up, func(o *Options) { o.Limits.CommandTimeout = 300 * time.Millisecond })
	r.filter.mu.Lock()
	r.filter.slow = true
	r.filter.mu.Unlock()
	c := r.dial()
	c.login()
	c.ok("DELE 2")
	resp := c.cmd("RETR 1")
	if resp.OK || resp.Code != pop3.CodeSysTemp || !strings.Contains(resp.Text, "too long") {
		t.Fatalf("RETR with a stuck policy: %s", resp.Line())
	}
	if !c.closed() {
		t.Fatal("the session went on")
	}
	recs := r.audit.all()
	if len(recs) != 1 || recs[0].Reply == nil || !strings.Contains(recs[0].Reply.Text, "too long") {
		t.Fatalf("records %+v", recs)
	}
	time.Sleep(50 * time.Millisecond)
	if d := up.deletedOf("alice"); len(d) != 0 {
		t.Fatalf("deleted %v", d)
	}
}

// TestPerClientLimits: the per-address session cap and connection rate of listener blocks hold for POP3 too (a
// client holding every session slot, slowloris), refused with -ERR [SYS/TEMP] and the reason.
func TestPerClientLimits(t *testing.T) {
	r := newRig(t, newTestUpstream(t), func(o *Options) { o.Limits.SessionsPerClient = 2 })
	r.dial()
	r.dial()
	refused := func(r *rig, want string) {
		t.Helper()
		n, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		n.SetDeadline(time.Now().Add(10 * time.Second))
		resp, err := pop3.NewClient(n, 1<<20).ReadResponse()
		if err != nil || resp.OK || resp.Code != pop3.CodeSysTemp || !strings.Contains(resp.Line(), want) {
			t.Fatalf("third session from one address: %q %v, want -ERR [SYS/TEMP] %s", resp.Line(), err, want)
		}
	}
	refused(r, "from your address")

	r = newRig(t, newTestUpstream(t), func(o *Options) { o.Limits.ConnectionRate = 2 })
	r.dial()
	r.dial()
	refused(r, "connections from your address")
}
