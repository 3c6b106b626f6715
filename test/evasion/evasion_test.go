// Package evasion tests the evasion corpus (internal/evasion) end to end: through the demo policy over SMTP,
// against the clean corpus, and against real MIME extractors.
package evasion

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/postern/postern/internal/evasion"
	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// demoPlugins are the plugins policies/demo.hcl loads from ../build/plugins.
var demoPlugins = []string{"eicar", "attachment-guard", "verdict", "external-tag", "dlp"}

// recorder keeps the audit records.
type recorder struct {
	mu   sync.Mutex
	recs []*audit.Record
}

func (r *recorder) Append(rec *audit.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}

func (r *recorder) last() *audit.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recs) == 0 {
		return nil
	}
	return r.recs[len(r.recs)-1]
}

// count is how many records were appended.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs)
}

// relay runs an SMTP relay with the policies of policies/demo.hcl (its listener settings aside: the relay writes
// no result headers, so what it delivers can be compared byte for byte) in front of an in-process upstream.
type relay struct {
	addr       string
	up         *smtptest.Upstream
	audit      *recorder
	quarantine string
}

func startDemo(t *testing.T, edit func(string) string) *relay {
	t.Helper()
	root := t.TempDir()
	plugins := filepath.Join(root, "build", "plugins")
	for _, dir := range []string{plugins, filepath.Join(root, "policies")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range demoPlugins {
		if err := os.Symlink(testplugins.Path(t, "plugins/"+name), filepath.Join(plugins, name+".wasm")); err != nil {
			t.Fatal(err)
		}
	}
	demo, err := os.ReadFile(filepath.Join(testplugins.Root(), "policies", "demo.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(root, "policies", "demo.hcl")
	if edit != nil {
		demo = []byte(edit(string(demo)))
	}
	if err := os.WriteFile(cfg, demo, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := policy.NewManager(ctx, cfg, policy.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(ctx) })

	r := &relay{up: (&smtptest.Upstream{}).Start(t), audit: &recorder{}, quarantine: filepath.Join(root, "quarantine")}
	s, err := smtpproxy.New(smtpproxy.Options{Hostname: "relay.test", Upstream: r.up.Addr, Filters: smtpproxy.Policies(m),
		Audit: r.audit, QuarantineDir: r.quarantine, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	r.addr = ln.Addr().String()
	return r
}

// outcome is what became of one message sent through the relay.
type outcome struct {
	code      int    // the final reply's code
	action    string // the action of the message's audit record
	policy    bool   // a policy decided (false: the relay refused it on receipt, before any policy)
	delivered []byte // what the upstream received, nil if nothing
}

// send sends raw (line endings made CRLF, dot-stuffed) from sender, on a connection of its own (the relay
// closes a session after 20 refusals), and reports what happened to it.
func (r *relay) send(t *testing.T, sender string, raw []byte) (outcome, []byte) {
	t.Helper()
	c := hello(t, r.addr)
	defer c.Cmd("QUIT")
	data := crlf(raw)
	before, recs := len(r.up.Messages()), r.audit.count()
	reply := c.Send(sender, []string{"alice@example.com"}, dotStuff(data))
	o := outcome{code: reply.Code}
	if rec := r.audit.last(); rec != nil && r.audit.count() > recs {
		o.action, o.policy = rec.Action, len(rec.Policies) > 0
	}
	if msgs := r.up.Messages(); len(msgs) > before {
		o.delivered = msgs[len(msgs)-1].Data
	}
	return o, data
}

func (o outcome) stopped() bool {
	return o.delivered == nil && (o.code/100 == 5 || o.code/100 == 4 || o.action == "quarantine")
}

// crlf gives raw the line endings SMTP needs: CRLF, also for bare CR and LF (which the relay refuses).
func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	b = bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
	b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		b = append(b, '\r', '\n')
	}
	return b
}

func dotStuff(b []byte) string {
	lines := strings.SplitAfter(string(b), "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") {
			lines[i] = "." + l
		}
	}
	return strings.Join(lines, "")
}

func hello(t *testing.T, addr string) *smtptest.Client {
	c := smtptest.Dial(t, addr)
	c.Expect("", 220)
	c.Expect("EHLO client.test", 250)
	return c
}

// TestEvasionThroughDemo sends every message of the evasion corpus through the demo policy over SMTP: each
// must be stopped (rejected, or quarantined with its original kept), and the audit record keeps what the
// parser flagged. The per-class rate is logged (go test -v); docs/SECURITY.md quotes it.
func TestEvasionThroughDemo(t *testing.T) {
	t.Run("demo", func(t *testing.T) { throughDemo(t, nil) })
	// Without the policy that holds ambiguous and malformed mail, the plugins alone, reading what the host
	// decoded, stop every message too: the host's lenient reading is what stops them, the hold is a second net.
	t.Run("plugins only", func(t *testing.T) {
		throughDemo(t, func(s string) string {
			i := strings.Index(s, "policy \"suspect-structure\" {")
			j := strings.Index(s, "policy \"content\" {")
			if i < 0 || j < i {
				t.Fatal("policies/demo.hcl has no policy \"suspect-structure\" before \"content\"")
			}
			return s[:i] + s[j:]
		})
	})
}

func throughDemo(t *testing.T, edit func(string) string) {
	r := startDemo(t, edit)
	type tally struct{ stopped, total int }
	perClass := map[string]*tally{}
	for _, cs := range evasion.Cases() {
		o, _ := r.send(t, "mallory@evil.test", cs.Raw)
		key := cs.Class + " / " + cs.Payload
		if perClass[key] == nil {
			perClass[key] = &tally{}
		}
		perClass[key].total++
		if o.stopped() {
			perClass[key].stopped++
		} else {
			t.Errorf("%s (%s): not stopped: reply %d, action %q", cs.ID, cs.Technique, o.code, o.action)
		}
		if o.action == "quarantine" {
			if files, _ := filepath.Glob(filepath.Join(r.quarantine, "*.eml")); len(files) == 0 {
				t.Errorf("%s: quarantined, but nothing kept in %s", cs.ID, r.quarantine)
			}
		}
	}
	var keys []string
	for k := range perClass {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	all, stopped := 0, 0
	for _, k := range keys {
		v := perClass[k]
		t.Logf("%-24s %d / %d stopped", k, v.stopped, v.total)
		all += v.total
		stopped += v.stopped
	}
	t.Logf("%-24s %d / %d stopped", "all", stopped, all)
}

// TestCleanCorpusThroughDemo sends the clean corpus (testdata/corpus: real mail collected by other projects,
// malformed mail included) through the same relay from an internal sender: every message that mail clients
// read one way, and that is not malformed, is delivered byte-identical (no false positive), and every message
// that is delivered at all is byte-identical. Malformed or ambiguous mail with attachments is held, by design;
// how much of the corpus that is, is logged.
func TestCleanCorpusThroughDemo(t *testing.T) {
	// The content policy marks external mail (and may tag it): by design it changes messages. In monitor mode it
	// runs and changes nothing, which leaves the policies that stop mail.
	r := startDemo(t, func(s string) string {
		if !strings.Contains(s, "policy \"content\" {\n") {
			t.Fatal("policies/demo.hcl has no policy \"content\"")
		}
		return strings.Replace(s, "policy \"content\" {\n", "policy \"content\" {\n  mode = \"monitor\"\n", 1)
	})
	var files []string
	err := filepath.WalkDir(filepath.Join(testplugins.Root(), "testdata", "corpus"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".eml") || strings.HasSuffix(p, ".raw")) &&
			!strings.Contains(p, string(filepath.Separator)+"postern"+string(filepath.Separator)) {
			files = append(files, p)
		}
		return err
	})
	if err != nil || len(files) < 100 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	counts := map[string]int{}
	for _, p := range files {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(filepath.Join(testplugins.Root(), "testdata", "corpus"), p)
		o, sent := r.send(t, "colleague@example.com", raw)
		m, err := message.Parse(bytes.NewReader(sent), int64(len(sent)), message.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		clean := !m.Malformed() && !m.Ambiguous()
		switch {
		case o.delivered != nil && !bytes.Equal(o.delivered, sent):
			t.Errorf("%s: delivered changed:\n%s", rel, firstDiff(sent, o.delivered))
			counts["changed"]++
		case o.delivered != nil:
			counts["delivered byte-identical"]++
		case o.action == "accept":
			counts["accepted, refused by the test upstream"]++ // go-smtp refuses overlong lines
		case !o.policy && o.code == 550 && bytes.IndexByte(sent, 0) >= 0:
			counts["refused on receipt: NUL bytes (as Postfix does)"]++
		case clean:
			t.Errorf("%s: well-formed mail stopped: reply %d, action %q", rel, o.code, o.action)
			counts["false positive"]++
		case m.Attachments() > 0:
			counts["held: malformed or ambiguous with attachments"]++
		default:
			counts["stopped otherwise"]++
			t.Errorf("%s: stopped: reply %d, action %q, defects %v", rel, o.code, o.action, message.DefectKinds(m.Defects()))
		}
	}
	for k, v := range counts {
		t.Logf("%-48s %d / %d", k, v, len(files))
	}
}

// firstDiff shows where two messages start to differ.
func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	from := max(0, i-40)
	return fmt.Sprintf("at byte %d: sent %q, delivered %q", i, a[from:min(len(a), i+40)], b[from:min(len(b), i+40)])
}
