package postern

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"
)

// DecodeConfig decodes a plugin's JSON configuration (ConfigJSON) into v, a pointer to a struct already holding
// the defaults. Decoding is strict: a key v has no field for, a value of the wrong type, or data after the
// document is an error, so that a misspelt setting fails the load instead of silently leaving a default in place.
// The errors are in the words of the configuration, not of the decoder:
//
//	unknown key "acton" (known keys: action, code, score, text)
//	min_matches: want a number, got a string
//
// An empty configuration leaves v unchanged, like "{}". Config is ConfigJSON followed by DecodeConfig.
func DecodeConfig(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return configError(data, v, err)
	}
	if dec.More() {
		return fmt.Errorf("data after the JSON document at offset %d", dec.InputOffset())
	}
	return nil
}

// configError rewrites an encoding/json error in terms of the configuration's keys.
func configError(data []byte, v any, err error) error {
	var (
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
	)
	switch {
	case errors.As(err, &typeErr):
		where := typeErr.Field
		if where == "" {
			where = "the configuration"
		}
		return fmt.Errorf("%s: want %s, got %s", where, jsonKind(typeErr.Type), article(typeErr.Value))
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("not valid JSON at offset %d: %s", syntaxErr.Offset, strings.TrimPrefix(syntaxErr.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("not valid JSON: the document is cut short")
	}
	// encoding/json reports an unknown key only as text: `json: unknown field "x"`.
	if key, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name := strings.Trim(key, `"`)
		var top map[string]json.RawMessage
		if known := jsonKeys(reflect.TypeOf(v)); len(known) > 0 && json.Unmarshal(data, &top) == nil {
			if _, atTop := top[name]; atTop {
				return fmt.Errorf("unknown key %s (known keys: %s)", key, strings.Join(known, ", "))
			}
		}
		return fmt.Errorf("unknown key %s", key)
	}
	return err
}

// jsonKeys lists the JSON keys of the struct t points to, sorted.
func jsonKeys(t reflect.Type) []string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys = append(keys, name)
	}
	sort.Strings(keys)
	return keys
}

// jsonKind names what a Go type accepts in JSON.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8,
		reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return t.String()
}

// article turns encoding/json's name of a JSON value ("string", "number 1.5", "array") into words.
func article(v string) string {
	switch {
	case v == "array":
		return "a list"
	case v == "object":
		return "an object"
	case v == "bool":
		return "true or false"
	case strings.HasPrefix(v, "number"):
		return v
	}
	return "a " + v
}

// Action is what a configuration tells a plugin to do with a message it flags: the "action" key of the
// first-party plugins. It decodes from a JSON string in any case and with surrounding spaces; Check then limits
// it to the actions the plugin supports.
type Action string

// The actions the first-party plugins share. A plugin may define more (attachment-guard's "strip").
const (
	ActionReject     Action = "reject"
	ActionTempfail   Action = "tempfail"
	ActionQuarantine Action = "quarantine"
	ActionDiscard    Action = "discard"
	ActionTag        Action = "tag" // tag (and score) the message, and let it pass
)

// UnmarshalJSON accepts a string and normalises it (lower case, no surrounding spaces).
func (a *Action) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("action: want a string, got %s", b)
	}
	*a = Action(strings.ToLower(strings.TrimSpace(s)))
	return nil
}

// Check returns an error unless a is one of allowed:
// `action: unknown value "drop" (want reject, quarantine or tag)`.
func (a Action) Check(allowed ...Action) error {
	for _, x := range allowed {
		if a == x {
			return nil
		}
	}
	names := make([]string, len(allowed))
	for i, x := range allowed {
		names[i] = string(x)
	}
	want := strings.Join(names, ", ")
	if n := len(names); n > 1 {
		want = strings.Join(names[:n-1], ", ") + " or " + names[n-1]
	}
	return fmt.Errorf("action: unknown value %q (want %s)", string(a), want)
}

// CheckReplyCode checks a configured SMTP reply code for the verdict it goes with (ABI §3.5): a rejection needs a
// 5xx code, a temporary failure a 4xx one. Other actions send no reply code, so a code with them is an error.
func CheckReplyCode(a Action, code int) error {
	switch a {
	case ActionReject:
		if code < 500 || code > 599 {
			return fmt.Errorf("code %d: a rejection needs a 5xx code", code)
		}
	case ActionTempfail:
		if code < 400 || code > 499 {
			return fmt.Errorf("code %d: a temporary failure needs a 4xx code", code)
		}
	default:
		return fmt.Errorf("code is only used with action reject or tempfail, not %s", a)
	}
	return nil
}

// CheckReplyText applies the ABI's rules for reply text (printable UTF-8, no CR or LF, at most 512 bytes) at
// configuration time, so that a bad text fails the load instead of every message.
func CheckReplyText(s string) error {
	if len(s) > maxReplyText {
		return fmt.Errorf("%d bytes, at most %d", len(s), maxReplyText)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}

// maxReplyText is the longest reply text the host accepts (ABI §3.5, set_verdict).
const maxReplyText = 512
