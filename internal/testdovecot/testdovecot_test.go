package testdovecot

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// TestStartAndDeliver delivers a message over LMTP and reads the maildrop's STAT over POP3.
func TestStartAndDeliver(t *testing.T) {
	d := Start(t, Options{})
	d.Deliver(t, "alice", "Subject: hi\r\n\r\nhello\r\n")
	c, err := net.Dial("tcp", d.POP3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	read := func() string { l, _ := br.ReadString('\n'); return l }
	if g := read(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	c.Write([]byte("USER alice\r\nPASS alicepass\r\nSTAT\r\nQUIT\r\n"))
	read()
	if l := read(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("login %q\n%s", l, d.Log())
	}
	if l := read(); !strings.HasPrefix(l, "+OK 1 ") {
		t.Fatalf("STAT %q", l)
	}
	// IMAP answers too.
	ic, err := net.Dial("tcp", d.IMAP)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	ic.SetDeadline(time.Now().Add(10 * time.Second))
	if l, _ := bufio.NewReader(ic).ReadString('\n'); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("IMAP greeting %q", l)
	}
}
