package smtpproxy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/policy"
	"github.com/postern/postern/proxy/smtpproxy"
	"github.com/postern/postern/proxy/smtpproxy/smtptest"
)

// firstPartyPolicy writes a configuration with the four first-party plugins in one enforcing policy and returns
// a policy manager for it.
func firstPartyPolicy(t testing.TB) *policy.Manager {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	for _, name := range []string{"eicar", "attachment-guard", "dlp", "external-tag"} {
		fmt.Fprintf(&b, "plugin %q {\n  source = %q\n}\n", name, testplugins.Path(t, "plugins/"+name))
	}
	b.WriteString(`policy "security" {
  plugins = ["eicar", "attachment-guard", "dlp", "external-tag"]
}
`)
	path := filepath.Join(dir, "postern.hcl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := policy.NewManager(context.Background(), path, policy.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

const eicarMessage = "From: a@outside.test\r\nTo: b@example.net\r\nSubject: test\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n" +
	"--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"test.txt\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n\r\n" +
	"WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNU\r\nLUZJTEUhJEgrSCo=\r\n" +
	"--b1--\r\n"

const exeMessage = "From: a@outside.test\r\nTo: b@example.net\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nplease pay\r\n" +
	"--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*0*=utf-8''invoice.pdf; filename*1=.exe\r\n" +
	"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\r\n" +
	"--b1--\r\n"

func TestFirstPartyPluginsThroughRelay(t *testing.T) {
	m := firstPartyPolicy(t)
	up := (&smtptest.Upstream{}).Start(t)
	rec := &recorder{}
	addr, _ := startRelay(t, smtpproxy.Options{Upstream: up.Addr, Filters: smtpproxy.Policies(m), Audit: rec})

	c := hello(t, addr)
	r := c.Send("a@outside.test", []string{"b@example.net"}, eicarMessage)
	if r.Code != 554 || !strings.Contains(r.Text(), "EICAR") {
		t.Fatalf("EICAR message: %v, want 554 naming EICAR", r)
	}
	r = c.Send("a@outside.test", []string{"b@example.net"}, exeMessage)
	if r.Code/100 != 5 {
		t.Fatalf("executable attachment: %v, want a 5xx", r)
	}
	if n := len(up.Messages()); n != 0 {
		t.Fatalf("upstream got %d messages", n)
	}

	// Internal mail goes through untouched; external mail is marked.
	internal := "From: colleague@example.net\r\nTo: b@example.net\r\nSubject: lunch\r\n\r\nNoon?\r\n"
	if r := c.Send("colleague@example.net", []string{"b@example.net"}, internal); r.Code != 250 {
		t.Fatalf("internal mail: %v", r)
	}
	external := "From: partner@outside.test\r\nTo: b@example.net\r\nSubject: offer\r\n\r\nHello.\r\n"
	if r := c.Send("partner@outside.test", []string{"b@example.net"}, external); r.Code != 250 {
		t.Fatalf("external mail: %v", r)
	}
	msgs := up.Messages()
	if len(msgs) != 2 {
		t.Fatalf("upstream got %d messages", len(msgs))
	}
	if string(msgs[0].Data) != internal {
		t.Fatalf("internal mail changed:\n%s", msgs[0].Data)
	}
	if got := string(msgs[1].Data); !strings.Contains(got, "Subject: [EXTERNAL] offer\r\n") ||
		!strings.Contains(got, "X-Postern-External: yes") {
		t.Fatalf("external mail not marked:\n%s", got)
	}
	recs := rec.records()
	if len(recs) != 4 || recs[0].Action != "reject" || recs[3].Action != "accept" || recs[3].SHA256Out == "" ||
		len(recs[3].Policies) != 1 || len(recs[3].Policies[0].Plugins) != 4 || recs[3].ConfigVersion == "" {
		t.Fatalf("audit records: %+v", recs)
	}
}
