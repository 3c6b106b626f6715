package policy

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
)

// Action is what happens to a message (or an envelope stage) after every matching policy ran.
type Action = pluginhost.Kind

// Mode says whether a policy's verdicts are carried out.
type Mode string

const (
	// ModeEnforce carries out the policy's verdict.
	ModeEnforce Mode = "enforce"
	// ModeMonitor runs everything and records what would have happened, but enforces nothing: the message
	// passes unchanged as far as this policy is concerned.
	ModeMonitor Mode = "monitor"
)

// Decision is the outcome of evaluating the configuration for one hook of one message. Protocol sessions act on
// Action, Code, Enhanced, Text and Changes; the audit log records the whole of it.
type Decision struct {
	Hook     pluginhost.Hook `json:"hook"`
	Action   Action          `json:"action"`
	Code     int             `json:"code,omitempty"`
	Enhanced string          `json:"enhanced,omitempty"`
	Text     string          `json:"text,omitempty"`
	// Changes are the enforced changes of every policy, in order. Never nil.
	Changes *message.Changes  `json:"-"`
	Tags    map[string]string `json:"tags,omitempty"`
	Score   float64           `json:"score"`
	// Policies traces every policy considered, matched or not, in evaluation order.
	Policies []PolicyTrace `json:"policies"`
	// DecidedBy names the enforce-mode policy whose terminal action this is; "" when the action is accept.
	DecidedBy string `json:"decided_by,omitempty"`
	// ConfigVersion identifies the configuration that decided (a hash of its files).
	ConfigVersion string        `json:"config_version"`
	Duration      time.Duration `json:"duration_ns"`
}

// PolicyTrace records what one policy did, for `postern explain` and the audit log.
type PolicyTrace struct {
	Name    string `json:"name"`
	Mode    Mode   `json:"mode"`
	Matched bool   `json:"matched"`
	// Why explains the match: the `when` expression's source text, or "no when (matches everything)".
	Why     string        `json:"why,omitempty"`
	Plugins []PluginTrace `json:"plugins,omitempty"`
	Score   float64       `json:"score"`
	// Threshold names the score threshold that fired, if any.
	Threshold string `json:"threshold,omitempty"`
	// Action is what this policy decided; in monitor mode what it would have decided.
	Action Action `json:"action"`
	// Error is why the policy's when expression could not be evaluated (the policy then did not run).
	Error string `json:"error,omitempty"`
}

// PluginTrace records one plugin call of a policy's chain.
type PluginTrace struct {
	Name     string             `json:"name"`
	SHA256   string             `json:"sha256"`
	Verdict  pluginhost.Verdict `json:"verdict"`
	Tags     map[string]string  `json:"tags,omitempty"`
	Score    float64            `json:"score"`
	Changes  []message.Change   `json:"changes,omitempty"`
	Duration time.Duration      `json:"duration_ns"`
	Error    string             `json:"error,omitempty"`
	// Skipped is why the plugin was not called on this message (it declared it is not for such messages).
	Skipped string `json:"skipped,omitempty"`
	// Logs are the plugin's log lines for this call. They may quote the message, so the audit log leaves them
	// out; the proxy's log and `postern explain` show them.
	Logs []PluginLog `json:"logs,omitempty"`
}

// PluginLog is one log line of a plugin call.
type PluginLog struct {
	Level string `json:"level"` // debug, info, warn or error
	Text  string `json:"text"`
}

// MarshalJSON writes the decision with its hook by name ("message"), as the audit log and `postern explain
// -json` show it; pluginhost.Hook itself has no text form.
func (d Decision) MarshalJSON() ([]byte, error) {
	type plain Decision
	return json.Marshal(struct {
		Hook string `json:"hook"`
		plain
	}{d.Hook.String(), plain(d)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *Decision) UnmarshalJSON(b []byte) error {
	type plain Decision
	var v struct {
		Hook string `json:"hook"`
		*plain
	}
	v.plain = (*plain)(d)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	for h := pluginhost.HookConnect; h <= pluginhost.HookMessage; h++ {
		if h.String() == v.Hook {
			d.Hook = h
			return nil
		}
	}
	return fmt.Errorf("policy: unknown hook %q", v.Hook)
}

// verdictJSON is a verdict as JSON shows it: lower-case names, empty fields left out.
type verdictJSON struct {
	Kind     pluginhost.Kind `json:"kind"`
	Code     int             `json:"code,omitempty"`
	Enhanced string          `json:"enhanced,omitempty"`
	Text     string          `json:"text,omitempty"`
}

// MarshalJSON writes the verdict with lower-case field names ("verdict": {"kind": "reject", "code": 550, ...});
// pluginhost.Verdict has no JSON form of its own.
func (t PluginTrace) MarshalJSON() ([]byte, error) {
	type plain PluginTrace
	v := t.Verdict
	return json.Marshal(struct {
		Verdict verdictJSON `json:"verdict"`
		plain
	}{verdictJSON{v.Kind, v.Code, v.Enhanced, v.Text}, plain(t)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (t *PluginTrace) UnmarshalJSON(b []byte) error {
	type plain PluginTrace
	var v struct {
		Verdict verdictJSON `json:"verdict"`
		*plain
	}
	v.plain = (*plain)(t)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	t.Verdict = pluginhost.Verdict{Kind: v.Verdict.Kind, Code: v.Verdict.Code, Enhanced: v.Verdict.Enhanced, Text: v.Verdict.Text}
	return nil
}
