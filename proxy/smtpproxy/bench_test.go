package smtpproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// BenchmarkRelaySession measures one whole client session per iteration, as Postfix's smtp-source sends them:
// connect, HELO, MAIL, RCPT, a 10 KiB message, QUIT, through the relay to an in-process upstream. It includes
// the client's and the upstream's work; compare allocations and relative changes, not absolute times.
func BenchmarkRelaySession(b *testing.B) { benchRelaySession(b, nil) }

// BenchmarkRelaySessionPlugins is BenchmarkRelaySession through the four first-party plugins in one enforcing
// policy.
func BenchmarkRelaySessionPlugins(b *testing.B) {
	benchRelaySession(b, smtpproxy.Policies(firstPartyPolicy(b)))
}

func benchRelaySession(b *testing.B, filters smtpproxy.FilterSource) {
	up := (&smtptest.RawUpstream{}).Start(b)
	s, err := smtpproxy.New(smtpproxy.Options{Upstream: up.Addr, Hostname: "relay.bench", Filters: filters,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := smtpproxy.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(ln)
	b.Cleanup(func() { s.Close() })
	body := "From: a@example.org\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 78)+"\r\n", 128) + ".\r\n"
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		if err := session(ln.Addr().String(), body); err != nil {
			b.Fatal(err)
		}
	}
	// Wall time is mostly round-trip latency; the process's CPU time (user and system, client and upstream
	// included) is what the relay's work changes.
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func session(addr, body string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	expect := func(code string) error {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(l, code) {
				return fmt.Errorf("got %q, want %s", l, code)
			}
			if len(l) < 4 || l[3] != '-' {
				return nil
			}
		}
	}
	steps := []struct{ send, code string }{
		{"", "220"}, {"HELO bench\r\n", "250"}, {"MAIL FROM:<a@example.org>\r\n", "250"},
		{"RCPT TO:<b@example.net>\r\n", "250"}, {"DATA\r\n", "354"}, {body, "250"}, {"QUIT\r\n", "221"},
	}
	for _, st := range steps {
		if st.send != "" {
			if _, err := io.WriteString(c, st.send); err != nil {
				return err
			}
		}
		if err := expect(st.code); err != nil {
			return err
		}
	}
	return nil
}
