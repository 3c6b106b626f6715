package field_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/field"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

var update = flag.Bool("update", false, "rewrite the generated tables in sdk/ABI.md and docs/CONFIG.md")

const root = "../.."

// The generated tables sit between these lines in the docs.
const (
	beginABI   = "<!-- field table (generated from proxy/field: go test ./proxy/field -update) -->\n"
	beginFacts = "<!-- fact table (generated from proxy/field: go test ./proxy/field -update) -->\n"
	endTable   = "<!-- end of generated table -->\n"
)

// TestDocsTables: the field tables of sdk/ABI.md and docs/CONFIG.md are the table's.
func TestDocsTables(t *testing.T) {
	for _, doc := range []struct {
		path, begin, table string
	}{
		{"sdk/ABI.md", beginABI, field.ABITable()},
		{"docs/CONFIG.md", beginFacts, field.FactTable()},
	} {
		path := filepath.Join(root, doc.path)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		i := strings.Index(text, doc.begin)
		j := strings.Index(text, endTable)
		if i < 0 || j < i {
			t.Errorf("%s: no generated table (want it between %q and %q)", doc.path, doc.begin, endTable)
			continue
		}
		got := text[i+len(doc.begin) : j]
		if got == doc.table {
			continue
		}
		if *update {
			if err := os.WriteFile(path, []byte(text[:i+len(doc.begin)]+doc.table+text[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s: the field table differs from proxy/field's; run go test ./proxy/field -update\n got:\n%s\nwant:\n%s", doc.path, got, doc.table)
	}
}

// TestFactsSchema: the policy language's msg object has exactly the table's facts, with their types.
func TestFactsSchema(t *testing.T) {
	var want []string
	for _, f := range field.Table {
		if f.Fact != "" {
			want = append(want, f.Fact)
		}
	}
	var got []string
	for name := range config.MsgType.AttributeTypes() {
		got = append(got, name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("msg attributes %v, table facts %v", got, want)
	}
}

// TestAuditKeys: every audit key of the table is a field of audit.Record, and NewRecord fills it from a session
// that knows it.
func TestAuditKeys(t *testing.T) {
	tags := map[string]bool{}
	rt := reflect.TypeFor[audit.Record]()
	for i := range rt.NumField() {
		tags[strings.Split(rt.Field(i).Tag.Get("json"), ",")[0]] = true
	}
	// A message with something of everything the record keeps: a defect, an ambiguity (two boundaries, two file
	// names) and a bound passed (the structure under the second boundary exceeds the part limit).
	raw := "Message-ID: <m@example.org>\r\nContent-Type: multipart/mixed; boundary=a; boundary=b\r\n\r\n--a\r\n" +
		"Content-Disposition: attachment; filename=\"a.txt\"; filename=\"a.vbs\"\r\n\r\nx\r\n--a--\r\n" +
		"--b\r\n\r\ny\r\n--b--\r\n"
	limits := message.DefaultLimits()
	limits.MaxParts = 2
	m, err := message.Parse(strings.NewReader(raw), int64(len(raw)), limits)
	if err != nil {
		t.Fatal(err)
	}
	env := pluginhost.Envelope{Protocol: "smtp", Direction: "inbound", Listener: "mx", ClientIP: "192.0.2.1",
		ClientPort: 1, HELO: "h", TLSVersion: "TLS1.3", TLSCipher: "c", AuthUser: "alice",
		MailFrom: "a@example.org", HasMailFrom: true, Rcpts: []string{"b@example.com"},
		MailboxUser: "alice", Mailbox: "INBOX", UID: 7, UIDValidity: 9, UIDL: "u",
		InternalDate: time.Unix(1e9, 0), Flags: []string{`\Seen`}, Command: "fetch"}
	filled := map[string]bool{}
	for _, protocol := range []string{"smtp", "pop3", "imap"} {
		env.Protocol = protocol
		r := audit.NewRecord(&pluginhost.Input{Env: env, Msg: m},
			&policy.Decision{Hook: pluginhost.HookMessage, Action: pluginhost.Accept}, audit.Facts{})
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var keys map[string]any
		if err := json.Unmarshal(b, &keys); err != nil {
			t.Fatal(err)
		}
		for k := range keys {
			filled[k] = true
		}
	}
	for _, f := range field.Table {
		if f.Audit == "" {
			continue
		}
		if !tags[f.Audit] {
			t.Errorf("field %q: audit key %q is not a field of audit.Record", f.Name, f.Audit)
		}
		if !filled[f.Audit] {
			t.Errorf("field %q: NewRecord never writes its audit key %q", f.Name, f.Audit)
		}
	}
}

// TestSDKsKnowEveryField: the Go SDK reads every field the host offers, and the C SDK names every one.
func TestSDKsKnowEveryField(t *testing.T) {
	var goSrc strings.Builder
	files, _ := filepath.Glob(filepath.Join(root, "sdk/postern/*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		goSrc.Write(b)
	}
	cHeader, err := os.ReadFile(filepath.Join(root, "sdk/c/postern.h"))
	if err != nil {
		t.Fatal(err)
	}
	cDefine := regexp.MustCompile(`#define POSTERN_FIELD_[A-Z0-9_]+ "([^"]+)"`)
	cNames := map[string]bool{}
	for _, m := range cDefine.FindAllStringSubmatch(string(cHeader), -1) {
		cNames[m[1]] = true
	}
	for _, f := range field.Table {
		if f.Name == "" {
			continue
		}
		if !strings.Contains(goSrc.String(), `"`+f.Name+`"`) {
			t.Errorf("the Go SDK (sdk/postern) has no accessor for field %q", f.Name)
		}
		if !cNames[f.Name] {
			t.Errorf("the C SDK (sdk/c/postern.h) has no POSTERN_FIELD_ define for field %q", f.Name)
		}
		delete(cNames, f.Name)
	}
	for name := range cNames {
		t.Errorf("the C SDK defines field %q, which the table lacks", name)
	}
}

// TestConformanceKitReadsEveryField: the conformance kit checks every field of the table in every fixture and
// hook, so an SDK cannot pass it without reading a new field.
func TestConformanceKitReadsEveryField(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "sdk/conformance/expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		Fixtures map[string]struct {
			Hooks map[string]struct {
				Tags map[string]string `json:"tags"`
			} `json:"hooks"`
		} `json:"fixtures"`
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	if len(exp.Fixtures) < 2 {
		t.Fatalf("expected.json has %d fixtures", len(exp.Fixtures))
	}
	for fx, f := range exp.Fixtures {
		for hook, h := range f.Hooks {
			for _, fd := range field.Table {
				if fd.Name == "" {
					continue
				}
				if _, ok := h.Tags["field."+fd.Name]; !ok {
					t.Errorf("%s/%s: the kit does not check field %q", fx, hook, fd.Name)
				}
			}
		}
	}
}
