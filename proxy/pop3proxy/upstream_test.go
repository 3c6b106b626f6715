package pop3proxy

import (
	"bufio"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/postern/postern/proxy/pop3"
)

// testUpstream is a small POP3 server for the tests: users with passwords and maildrops, APOP, SASL PLAIN,
// STLS, XCLIENT, and injected faults.
type testUpstream struct {
	t     *testing.T
	ln    net.Listener
	stamp string // APOP timestamp in the greeting, "" for none
	noUID bool   // no UIDL
	// noXClient: XCLIENT is ignored, as Dovecot ignores it from an untrusted network.
	noXClient bool
	caps      []string
	tls       *tls.Config // offers STLS when set
	// implicit: TLS from the first byte (with tls); proxyV2: every connection starts with a PROXY v2 header.
	implicit, proxyV2 bool
	clients           []string // the client addresses PROXY headers gave
	// fault, when set, is asked before each command: it may write garbage, stall or drop the connection, and
	// returns true if it handled the command.
	fault func(c net.Conn, cmd pop3.Command) bool

	startOnce sync.Once

	mu       sync.Mutex
	users    map[string]string   // user → password
	drops    map[string][]string // user → messages
	deleted  map[string][]int    // user → message numbers deleted by a QUIT
	retrs    int                 // RETR commands served
	commands []string            // every command line received, PASS hidden
	xclient  []string
}

func newTestUpstream(t *testing.T) *testUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &testUpstream{t: t, ln: ln, users: map[string]string{"alice": "secret"}, drops: map[string][]string{},
		deleted: map[string][]int{}}
	t.Cleanup(func() { ln.Close() })
	return u
}

// start accepts connections; newRig calls it, so the tests set the upstream's fields before.
func (u *testUpstream) start() {
	u.startOnce.Do(func() { go u.accept() })
}

func (u *testUpstream) accept() {
	ln := u.ln
	func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
}

func (u *testUpstream) addr() string { return u.ln.Addr().String() }

func (u *testUpstream) setMessages(user string, msgs ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.drops[user] = msgs
}

func (u *testUpstream) retrCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.retrs
}

func (u *testUpstream) deletedOf(user string) []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]int(nil), u.deleted[user]...)
}

func (u *testUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.commands...)
}

func (u *testUpstream) serve(c net.Conn) {
	defer c.Close()
	if u.proxyV2 {
		pc := proxyproto.NewConn(c)
		if _, err := pc.Read(nil); err != nil {
			return
		}
		u.mu.Lock()
		u.clients = append(u.clients, pc.RemoteAddr().String())
		u.mu.Unlock()
		c = pc
	}
	if u.implicit {
		c = tls.Server(c, u.tls)
	}
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	out := func(s string) { bw.WriteString(s + "\r\n"); bw.Flush() }
	greet := "+OK test POP3 ready"
	if u.stamp != "" {
		greet += " " + u.stamp
	}
	out(greet)
	var user, loggedIn string
	var msgs []string
	var dele map[int]bool
	cr := pop3.NewCommandReader(br, 1<<20)
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		cmd, err := cr.ReadCommand()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.commands = append(u.commands, cmd.String())
		u.mu.Unlock()
		if u.fault != nil && u.fault(c, cmd) {
			continue
		}
		arg := func(i int) int {
			if i >= len(cmd.Args) {
				return 0
			}
			n, _ := pop3.MessageNumber(cmd.Args[i])
			if n > len(msgs) || dele[n] {
				return 0
			}
			return n
		}
		switch cmd.Name {
		case "CAPA":
			lines := []string{"TOP", "USER", "SASL PLAIN", "RESP-CODES", "EXPIRE NEVER"}
			if !u.noUID {
				lines = append(lines, "UIDL")
			}
			if u.tls != nil && !u.implicit {
				lines = append(lines, "STLS")
			}
			lines = append(lines, u.caps...)
			out("+OK")
			pop3.WriteLines(bw, lines)
			bw.Flush()
		case "STLS":
			out("+OK go ahead")
			tc := tls.Server(c, u.tls)
			if tc.Handshake() != nil {
				return
			}
			c = tc
			br.Reset(c)
			bw.Reset(c)
		case "XCLIENT":
			u.mu.Lock()
			u.xclient = append(u.xclient, strings.Join(cmd.Args, " "))
			u.mu.Unlock()
			if u.noXClient {
				out("+OK You are not from trusted IP - ignoring") // Dovecot's answer
				continue
			}
			out("+OK")
		case "USER":
			user = cmd.Args[0]
			out("+OK")
		case "PASS", "APOP", "AUTH":
			ok := false
			u.mu.Lock()
			switch cmd.Name {
			case "PASS":
				ok = u.users[user] == pop3.PassArgument(cr.Line) && user != ""
			case "APOP":
				sum := md5.Sum([]byte(u.stamp + u.users[cmd.Args[0]]))
				user = cmd.Args[0]
				ok = u.stamp != "" && hex.EncodeToString(sum[:]) == cmd.Args[1]
			case "AUTH":
				b, _ := pop3.DecodeSASL(cmd.Args[1])
				p := strings.Split(string(b), "\x00")
				if len(p) == 3 {
					user = p[1]
					ok = u.users[p[1]] == p[2]
				}
			}
			msgs = append([]string(nil), u.drops[user]...)
			u.mu.Unlock()
			if !ok {
				out("-ERR [AUTH] Authentication failed.")
				continue
			}
			loggedIn, dele = user, map[int]bool{}
			out("+OK Logged in.")
		case "LIST", "STAT", "UIDL":
			if cmd.Name == "UIDL" && u.noUID {
				out("-ERR no UIDL")
				continue
			}
			var lines []string
			var total int
			for i, m := range msgs {
				if dele[i+1] {
					continue
				}
				total += len(m)
				if cmd.Name == "UIDL" {
					lines = append(lines, fmt.Sprintf("%d uid-%s-%d", i+1, loggedIn, i+1))
				} else {
					lines = append(lines, fmt.Sprintf("%d %d", i+1, len(m)))
				}
			}
			if cmd.Name == "STAT" {
				out(fmt.Sprintf("+OK %d %d", len(lines), total))
				continue
			}
			out("+OK")
			pop3.WriteLines(bw, lines)
			bw.Flush()
		case "RETR", "TOP":
			n := arg(0)
			if n == 0 {
				out("-ERR no such message")
				continue
			}
			u.mu.Lock()
			u.retrs++
			u.mu.Unlock()
			out("+OK")
			pop3.WriteMessage(bw, strings.NewReader(msgs[n-1]), make([]byte, 4096))
			bw.Flush()
		case "DELE":
			n := arg(0)
			if n == 0 {
				out("-ERR no such message")
				continue
			}
			dele[n] = true
			out("+OK deleted")
		case "RSET":
			dele = map[int]bool{}
			out("+OK")
		case "NOOP":
			out("+OK")
		case "QUIT":
			u.mu.Lock()
			for n := range dele {
				u.deleted[loggedIn] = append(u.deleted[loggedIn], n)
			}
			u.mu.Unlock()
			out("+OK bye")
			return
		default:
			out("-ERR unknown")
		}
	}
}
