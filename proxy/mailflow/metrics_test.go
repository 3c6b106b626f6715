package mailflow

import (
	"strings"
	"testing"

	"github.com/postern/postern/internal/metricstest"
	"github.com/postern/postern/proxy/audit"
	"github.com/postern/postern/proxy/metrics"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

// TestMetrics checks what the pipeline counts: a recorded stage decision and a message outcome, each with the
// class of the reply the client got, labelled with the listener and protocol of the session.
func TestMetrics(t *testing.T) {
	f := &fakeFilter{hooks: ^pluginhost.HookSet(0), decide: func(h pluginhost.Hook, _ *pluginhost.Input) *policy.Decision {
		return &policy.Decision{Hook: h, Action: pluginhost.Reject, Code: 550}
	}}
	flow, _ := newFlow(t, f, &records{}, nil, false)
	s, err := flow.Open(t.Context(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := &pluginhost.Input{Env: pluginhost.Envelope{Listener: "metrics-test", Protocol: "pop3"}}
	lbl := func(kv ...string) map[string]string {
		return metricstest.L(append([]string{"listener", "metrics-test", "protocol", "pop3"}, kv...)...)
	}
	before := metricstest.Serve(t, metrics.Handler())

	d := s.Stage(pluginhost.HookRcptTo, in)
	s.Record(in, d, audit.Reply{Code: 550, Enhanced: "5.7.1", Text: "no"})
	sp, err := s.Receive(strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	out, err := s.Message(sp, MessageInput{In: in, ID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	out.RecordServed(audit.Reply{Status: audit.StatusPOP3Err, Text: "withheld"}, "", "")
	out.Close()

	after := metricstest.Serve(t, metrics.Handler())
	metricstest.Rise(t, before, after, "postern_stage_decisions_total", lbl("hook", "rcpt_to", "action", "reject"), 1)
	metricstest.Rise(t, before, after, "postern_replies_total", lbl("class", "5xx"), 1)
	metricstest.Rise(t, before, after, "postern_messages_total", lbl("hook", "message", "action", "reject"), 1)
	metricstest.Rise(t, before, after, "postern_replies_total", lbl("class", "-ERR"), 1)
}
