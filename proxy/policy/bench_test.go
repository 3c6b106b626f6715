package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/pluginhost"
)

// benchWhens are ten conditions of the kinds admins write: envelope tests, domain and CIDR matching, a regular
// expression over the subject, a header lookup.
var benchWhens = []string{
	`msg.direction == "inbound" && msg.protocol == "smtp"`,
	`contains(msg.rcpt_domains, "corp.example")`,
	`cidrmatch(msg.client_ip, "10.0.0.0/8", "192.168.0.0/16", "192.0.2.0/24")`,
	`domain_match(msg.mail_from_domain, ["*.example.net", "partner.example"])`,
	`msg.size > 1000000 || msg.size < 10`,
	`regex_match(msg.subject, "(?i)(invoice|payment|urgent)")`,
	`header("X-Mailer") != "" && !msg.tls`,
	`msg.user == "" && msg.listener == "mx"`,
	`glob(msg.from, "*@example.net")`,
	`length(msg.rcpt) > 5 || startswith(lower(msg.helo), "localhost")`,
}

// BenchmarkEvaluate10Policies measures the engine's own cost per message for ten policies: building the msg
// object, evaluating every when, running the chains and combining. Each policy's chain is one plugin that does
// nothing and costs nothing (a fake), so plugin time is excluded.
func BenchmarkEvaluate10Policies(b *testing.B) {
	var policies strings.Builder
	var fakes []*fakePlugin
	for i, w := range benchWhens {
		name := fmt.Sprintf("p%d", i)
		fakes = append(fakes, &fakePlugin{name: name, hooks: 1 << pluginhost.HookMessage})
		fmt.Fprintf(&policies, "policy %q {\n  when = %s\n  plugins = [%q]\n  thresholds {\n    tag = 5\n  }\n}\n", name, w, name)
	}
	s := engine(b, policies.String(), fakes...)
	in := testInput(b, testMessage)
	ctx := context.Background()
	d := s.Evaluate(ctx, pluginhost.HookMessage, in)
	matched := 0
	for _, p := range d.Policies {
		if p.Matched {
			matched++
		}
	}
	b.ReportMetric(float64(matched), "matched/op")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s.Evaluate(ctx, pluginhost.HookMessage, in)
	}
}

// BenchmarkEvaluateNoPolicyForHook is the cost at a hook no policy handles (most envelope stages).
func BenchmarkEvaluateNoPolicyForHook(b *testing.B) {
	s := engine(b, "policy \"p\" {\n  when = msg.tls\n  plugins = [\"m\"]\n}\n",
		&fakePlugin{name: "m", hooks: 1 << pluginhost.HookMessage})
	in := testInput(b, "")
	b.ReportAllocs()
	for b.Loop() {
		s.Evaluate(context.Background(), pluginhost.HookRcptTo, in)
	}
}

// BenchmarkReloadPolicyOnly reloads a configuration whose plugins stay as they were (the policies alternate):
// the plugins are shared, so a reload costs the configuration's loading and checking, not the plugins'.
func BenchmarkReloadPolicyOnly(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	plugins := map[string]string{"a": "tag=a:1", "b": "tag=b:1", "c": "tag=c:1", "d": "tag=d:1"}
	policies := []string{
		"policy \"all\" {\n  plugins = [\"a\", \"b\", \"c\", \"d\"]\n}\n",
		"policy \"all\" {\n  plugins = [\"d\", \"c\", \"b\", \"a\"]\n}\n",
	}
	path := scriptedConfig(b, dir, plugins, policies[0])
	m := newManager(b, path)
	defer m.Close(ctx)
	i := 0
	for b.Loop() {
		i++
		scriptedConfig(b, dir, plugins, policies[i%2])
		if res, err := m.Reload(ctx); err != nil || res.Unchanged {
			b.Fatal(err, res.Unchanged)
		}
	}
}
