package smtptest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// RawMessage is one message a RawUpstream accepted.
type RawMessage struct {
	From  string
	Rcpts []string
	Data  []byte
}

// RawUpstream is a scripted SMTP server written directly on the socket, so that a test controls every reply and
// every quirk. With Lenient it treats a bare CR or a bare LF as the end of a line and drops NUL bytes, as the
// servers that SMTP smuggling exploits do: sent straight to it, an end-of-data lookalike does end the message.
type RawUpstream struct {
	// Greeting is the first reply (default "220 raw.test ESMTP").
	Greeting string
	// Caps are the EHLO keywords (default PIPELINING, 8BITMIME, SIZE 10240000).
	Caps []string
	// Replies overrides the reply to a command, by verb ("MAIL", "RCPT", "DATA", "RSET", ...), or "DOT" for the
	// end of a message. A reply may have several lines separated by "\r\n".
	Replies map[string]string
	// Drop closes the connection when the verb arrives ("DOT": once the message data has been read).
	Drop map[string]bool
	// Delay waits before answering the verb.
	Delay   map[string]time.Duration
	Lenient bool

	Addr string

	mu       sync.Mutex
	messages []RawMessage
	commands []string
}

// Start listens on a free loopback port and serves until the test ends.
func (u *RawUpstream) Start(t testing.TB) *RawUpstream {
	t.Helper()
	if u.Greeting == "" {
		u.Greeting = "220 raw.test ESMTP"
	}
	if u.Caps == nil {
		u.Caps = []string{"PIPELINING", "8BITMIME", "SIZE 10240000"}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Addr = ln.Addr().String()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				u.serve(c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return u
}

// Messages returns the messages accepted so far.
func (u *RawUpstream) Messages() []RawMessage {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]RawMessage(nil), u.messages...)
}

// Commands returns every command line received, in order.
func (u *RawUpstream) Commands() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.commands...)
}

// readLine reads one line by the server's rules: CRLF only, or (lenient) CR, LF or CRLF, without NULs.
func (u *RawUpstream) readLine(r *bufio.Reader) (string, error) {
	var line []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return string(line), err
		}
		switch {
		case c == 0 && u.Lenient:
			continue
		case c == '\n' && u.Lenient:
			return string(line), nil
		case c == '\r':
			next, err := r.Peek(1)
			if err == nil && next[0] == '\n' {
				r.ReadByte()
				return string(line), nil
			}
			if u.Lenient {
				return string(line), nil
			}
		}
		line = append(line, c)
	}
}

func (u *RawUpstream) serve(c net.Conn) {
	r := bufio.NewReader(c)
	say := func(reply string) bool {
		_, err := fmt.Fprintf(c, "%s\r\n", reply)
		return err == nil
	}
	act := func(verb, def string) bool {
		if u.Drop[verb] {
			return false
		}
		if d := u.Delay[verb]; d > 0 {
			time.Sleep(d)
		}
		if rep, ok := u.Replies[verb]; ok {
			def = rep
		}
		return say(def)
	}
	if !say(u.Greeting) {
		return
	}
	var cur RawMessage
	for {
		line, err := u.readLine(r)
		if err != nil {
			return
		}
		u.mu.Lock()
		u.commands = append(u.commands, line)
		u.mu.Unlock()
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO", "HELO":
			lines := []string{"raw.test"}
			lines = append(lines, u.Caps...)
			var b strings.Builder
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				if i > 0 {
					b.WriteString("\r\n")
				}
				b.WriteString("250" + sep + l)
			}
			if !act(verb, b.String()) {
				return
			}
		case "XCLIENT":
			if !act(verb, u.Greeting) {
				return
			}
		case "MAIL":
			cur = RawMessage{From: addrOf(line)}
			if !act(verb, "250 2.1.0 Ok") {
				return
			}
		case "RCPT":
			cur.Rcpts = append(cur.Rcpts, addrOf(line))
			if !act(verb, "250 2.1.5 Ok") {
				return
			}
		case "DATA":
			if !act(verb, "354 End data with <CR><LF>.<CR><LF>") {
				return
			}
			if u.Replies["DATA"] != "" && !strings.HasPrefix(u.Replies["DATA"], "354") {
				continue
			}
			var data bytes.Buffer
			for {
				l, err := u.readLine(r)
				if err != nil {
					return
				}
				if l == "." {
					break
				}
				l = strings.TrimPrefix(l, ".")
				data.WriteString(l)
				data.WriteString("\r\n")
			}
			cur.Data = data.Bytes()
			if u.Drop["DOT"] {
				return
			}
			if d := u.Delay["DOT"]; d > 0 {
				time.Sleep(d)
			}
			reply := "250 2.0.0 Ok: queued"
			if rep, ok := u.Replies["DOT"]; ok {
				reply = rep
			}
			if strings.HasPrefix(reply, "250") {
				u.mu.Lock()
				u.messages = append(u.messages, cur)
				u.mu.Unlock()
			}
			cur = RawMessage{}
			if !say(reply) {
				return
			}
		case "RSET":
			cur = RawMessage{}
			if !act(verb, "250 2.0.0 Ok") {
				return
			}
		case "NOOP":
			if !act(verb, "250 2.0.0 Ok") {
				return
			}
		case "QUIT":
			act(verb, "221 2.0.0 Bye")
			return
		default:
			if !act(verb, "502 5.5.2 Error: command not recognized") {
				return
			}
		}
	}
}

func addrOf(line string) string {
	i := strings.IndexByte(line, '<')
	j := strings.IndexByte(line, '>')
	if i < 0 || j < i {
		return ""
	}
	return line[i+1 : j]
}
