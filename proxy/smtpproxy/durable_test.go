package smtpproxy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// failingAudit is a durable auditor whose disk is full while full is set.
type failingAudit struct {
	mu      sync.Mutex
	full    bool
	durable []*audit.Record // what AppendDurable and AppendPending wrote
	plain   []*audit.Record
}

var errDiskFull = fmt.Errorf("%w: %w", audit.ErrNotRecorded, syscall.ENOSPC)

func (a *failingAudit) Append(r *audit.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.full {
		return errDiskFull
	}
	a.plain = append(a.plain, r)
	return nil
}

func (a *failingAudit) AppendDurable(r *audit.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.full {
		return errDiskFull
	}
	a.durable = append(a.durable, r)
	return nil
}

func (a *failingAudit) AppendPending(r *audit.Record) (*audit.Pending, error) {
	return nil, errDiskFull // *audit.Pending cannot be made outside the audit package: a full disk only
}

// TestNoAcknowledgementWithoutDurableRecord: while the audit log cannot be written, a message that would go on,
// be discarded or be quarantined is answered 451 4.3.0 and is neither delivered nor acknowledged; a refusal still
// gets its refusal.
func TestNoAcknowledgementWithoutDurableRecord(t *testing.T) {
	for _, action := range []pluginhost.Kind{pluginhost.Accept, pluginhost.Discard, pluginhost.Quarantine, pluginhost.Reject} {
		t.Run(action.String(), func(t *testing.T) {
			up := (&smtptest.Upstream{}).Start(t)
			a := &failingAudit{full: true}
			f := &testFilter{decide: decideAt(pluginhost.HookMessage, policy.Decision{Action: action})}
			addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f, Audit: a,
				QuarantineDir: t.TempDir()})
			c := hello(t, addr)
			r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage)
			if action == pluginhost.Reject {
				if r.Code != 550 {
					t.Fatalf("reply %v, want the refusal", r)
				}
				return
			}
			if r.String() != "451 4.3.0 Audit log unavailable, try again later" {
				t.Fatalf("reply %v, want 451 4.3.0", r)
			}
			if m := up.Messages(); len(m) != 0 {
				t.Fatalf("delivered without a record: %+v", m)
			}
			// The session goes on, and the upstream transaction was reset.
			c.Expect("NOOP", 250)
			if action == pluginhost.Accept {
				return // failingAudit cannot make a Pending: the success path is tested on a real log below
			}
			a.mu.Lock()
			a.full = false
			a.mu.Unlock()
			if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
				t.Fatalf("with the disk back: %v", r)
			}
			if len(a.durable) != 1 || a.durable[0].Reply == nil || a.durable[0].Reply.Code != 250 {
				t.Fatalf("durable records: %+v", a.durable)
			}
		})
	}
}

// TestRelayWithFullAuditDisk runs the relay with a real audit log on a full 64 KiB tmpfs (root only): nothing is
// delivered or acknowledged while the disk is full; once there is room again, the message goes on with a pending
// record before it and an outcome after.
func TestRelayWithFullAuditDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "postern-relay-test", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	log, err := audit.Open(audit.Options{Path: filepath.Join(dir, "audit.log"), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)

	up := (&smtptest.Upstream{}).Start(t)
	f := &testFilter{decide: decideAt(pluginhost.HookMessage, policy.Decision{Action: pluginhost.Accept, Tags: map[string]string{"t": "1"}})}
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f, Audit: log})
	c := hello(t, addr)
	if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.String() != "451 4.3.0 Audit log unavailable, try again later" {
		t.Fatalf("with the audit disk full: %v, want 451 4.3.0", r)
	}
	if m := up.Messages(); len(m) != 0 {
		t.Fatalf("delivered without a record: %+v", m)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if r := c.Send("a@example.org", []string{"b@example.net"}, simpleMessage); r.Code != 250 {
		t.Fatalf("with room again: %v", r)
	}
	c.Expect("QUIT", 221)
	if m := up.Messages(); len(m) != 1 {
		t.Fatalf("upstream got %d messages, want 1", len(m))
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	sum, err := audit.VerifyFiles([]string{filepath.Join(dir, "audit.log")}, "")
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(sum.Unfinished) != 0 {
		t.Fatalf("pending records without an outcome: %+v", sum.Unfinished)
	}
	recs := readRecords(t, filepath.Join(dir, "audit.log"))
	var events []string
	for _, r := range recs {
		if r.Event == audit.EventPending || r.Event == audit.EventOutcome {
			events = append(events, string(r.Event))
		}
	}
	if fmt.Sprint(events) != "[pending outcome]" {
		t.Fatalf("records: %v, want a pending record and its outcome", events)
	}
}

func readRecords(t *testing.T, path string) []audit.Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []audit.Record
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var r audit.Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs
}

// fillDisk writes to path until its file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 512)
	for n := len(block); n > 0; n /= 2 {
		for {
			if _, err := f.Write(block[:n]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
}

// TestRecipientDiscardNeedsItsRecord: a recipient discarded at RCPT TO is acknowledged only once its record is
// on disk; a recipient quarantined where there is no quarantine is deferred.
func TestRecipientDiscardNeedsItsRecord(t *testing.T) {
	up := (&smtptest.Upstream{}).Start(t)
	a := &failingAudit{full: true}
	f := &testFilter{decide: func(h pluginhost.Hook, in *pluginhost.Input) *policy.Decision {
		switch {
		case h == pluginhost.HookRcptTo && in.RcptCurrent == "trap@example.net":
			return &policy.Decision{Action: pluginhost.Discard}
		case h == pluginhost.HookRcptTo && in.RcptCurrent == "held@example.net":
			return &policy.Decision{Action: pluginhost.Quarantine}
		}
		return nil
	}}
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: f, Audit: a})
	c := hello(t, addr)
	c.Expect("MAIL FROM:<a@example.org>", 250)
	if r := c.Cmd("RCPT TO:<trap@example.net>"); r.String() != "451 4.3.0 Audit log unavailable, try again later" {
		t.Fatalf("discarded recipient with the audit disk full: %v", r)
	}
	if r := c.Cmd("RCPT TO:<held@example.net>"); r.Code != 451 {
		t.Fatalf("quarantined recipient without a quarantine: %v, want 451", r)
	}
	a.mu.Lock()
	a.full = false
	a.mu.Unlock()
	c.Expect("RCPT TO:<trap@example.net>", 250)
	if len(a.durable) != 1 || a.durable[0].Hook != "rcpt_to" || a.durable[0].Action != "discard" {
		t.Fatalf("durable records: %+v", a.durable)
	}
}
