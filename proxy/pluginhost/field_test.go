package pluginhost

import (
	"testing"
	"time"

	"github.com/postern/postern/proxy/field"
)

// TestFieldTable checks field_get against the field table: every field of the table is served, exactly where the
// table says (with every optional value known), and field_get looks every name up in the table, so it knows no other.
func TestFieldTable(t *testing.T) {
	for h := range numHooks {
		if field.Hook(h).String() != h.String() {
			t.Fatalf("hook %d: pluginhost says %q, field says %q", h, h, field.Hook(h))
		}
	}
	msg := parse(t, testMessage)
	full := func(protocol string) Envelope {
		env := retrievalEnvelope()
		env.Protocol = protocol
		env.UIDL = "uidl-1"
		env.SMTPUTF8 = true
		return env
	}
	for _, protocol := range []string{"smtp", "submission", "pop3", "imap", "test"} {
		for hook := range numHooks {
			in := &Input{Env: full(protocol), RcptCurrent: "carol@example.com"}
			if hook == HookMessage {
				in.Msg = msg
			}
			for _, fd := range field.Table {
				if fd.Name == "" {
					continue
				}
				h := newHarness(t, hook, in)
				np, nl := h.str(fd.Name)
				rc, _ := h.get("field_get", np, nl, 0)
				want := fd.Available(protocol, field.Hook(hook))
				switch {
				case want && rc == errUnavailable:
					t.Errorf("%s %v: field_get(%q) unavailable; the table says it is known", protocol, hook, fd.Name)
				case want && rc == errNotFound && fd.Type != field.List:
					t.Errorf("%s %v: field_get(%q) not found: the host does not serve a field of the table", protocol, hook, fd.Name)
				case !want && rc != errUnavailable:
					t.Errorf("%s %v: field_get(%q) = %d; the table says it is unavailable", protocol, hook, fd.Name, rc)
				}
			}
		}
	}
}

func TestInternalDateText(t *testing.T) {
	d := time.Date(2026, 3, 4, 5, 6, 7, 999, time.FixedZone("X", -5*3600))
	if got, want := InternalDateText(d), "2026-03-04T10:06:07Z"; got != want {
		t.Errorf("InternalDateText = %q, want %q", got, want)
	}
}

// TestFieldGetAllocs: reading a field allocates nothing in the host (plugins read fields on every call).
func TestFieldGetAllocs(t *testing.T) {
	h := newHarness(t, HookMessage, messageInput(t))
	np, nl := h.str("client.ip")
	args := []uint64{np, nl, 0, uint64(h.top), 64}
	f := frame{st: h.st, mem: h.mem, fn: "field_get"}
	if n := testing.AllocsPerRun(100, func() { fieldGet(f, args) }); n != 0 {
		t.Errorf("field_get allocates %v times per call", n)
	}
}
