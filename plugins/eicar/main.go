// Command eicar is a Postern plugin that detects the EICAR anti-virus test file in any part of a message and
// rejects the message by default, so an administrator can check end to end that mail really is scanned.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o eicar.wasm . (see README.md).
package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/postern/postern/sdk/postern"
)

// Set once per instance by setup; never holds message data.
var (
	cfg      config
	patterns *postern.Patterns
)

func init() {
	postern.OnInit(setup)
	postern.OnMessage(scan)
}

func main() {}

// setup runs once per instance: it reads the configuration and compiles the pattern in the host.
func setup() error {
	raw, err := postern.ConfigJSON()
	if err != nil {
		return fmt.Errorf("reading the configuration: %w", err)
	}
	if cfg, err = parseConfig(raw); err != nil {
		return err
	}
	if patterns, err = postern.Compile(eicarPattern); err != nil {
		return fmt.Errorf("compiling the EICAR pattern: %w", err)
	}
	return nil
}

// scan looks for the test string in the decoded content of every leaf part: a base64 attachment hides it from
// a scan of the raw message, a quoted-printable soft line break splits it.
func scan(m *postern.Message) error {
	parts, err := m.Parts()
	if err != nil {
		return fmt.Errorf("listing parts: %w", err)
	}
	var where []string
	for _, p := range parts {
		if p.Multipart {
			continue
		}
		found, err := partContains(m, p)
		if err != nil {
			return fmt.Errorf("scanning part %d: %w", p.ID, err)
		}
		if found {
			where = append(where, describe(p))
		}
	}
	if len(where) == 0 {
		return nil
	}
	list := strings.Join(where, ", ")
	postern.Logf(postern.LevelWarn, "EICAR test file found in %s; action %s", list, cfg.Action)
	if err := m.Tag("eicar.found", clip(list, 1024)); err != nil {
		return fmt.Errorf("tagging: %w", err)
	}
	if cfg.Score != 0 {
		if err := m.Score(cfg.Score); err != nil {
			return fmt.Errorf("scoring: %w", err)
		}
	}
	switch cfg.Action {
	case actionReject:
		err = m.Reject(cfg.Code, "5.7.1", cfg.Text)
	case actionTempfail:
		err = m.Tempfail(cfg.Code, "4.7.1", cfg.Text)
	case actionQuarantine:
		err = m.Quarantine(cfg.Text)
	case actionDiscard:
		err = m.Discard()
	}
	if err != nil {
		return fmt.Errorf("setting the verdict: %w", err)
	}
	return nil
}

// partContains searches one leaf part. Decoded content is what a user would save; when it cannot be decoded
// (an unknown encoding) the raw bytes are searched instead, which still finds a 7bit copy. Text in
// UTF-16 or UTF-32 is searched after conversion to UTF-8 as well.
func partContains(m *postern.Message, p postern.Part) (bool, error) {
	ms, err := m.Match(p.ID, postern.ModeDecoded, patterns, 1)
	if errors.Is(err, postern.ErrDecode) {
		ms, err = m.Match(p.ID, postern.ModeRaw, patterns, 1)
	}
	if err != nil || len(ms) > 0 {
		return len(ms) > 0, err
	}
	if strings.HasPrefix(p.ContentType, "text/") &&
		(strings.HasPrefix(p.Charset, "utf-16") || strings.HasPrefix(p.Charset, "utf-32")) {
		ms, err = m.Match(p.ID, postern.ModeText, patterns, 1)
		if errors.Is(err, postern.ErrDecode) {
			return false, nil
		}
		return len(ms) > 0, err
	}
	return false, nil
}

// describe names a part for logs and tags: "part 2 (eicar.com)".
func describe(p postern.Part) string {
	if p.Filename != "" {
		return fmt.Sprintf("part %d (%s)", p.ID, clip(p.Filename, 200))
	}
	return fmt.Sprintf("part %d", p.ID)
}

// clip makes a sender-controlled string safe for a tag or a log line: control characters become '?', and it is
// cut to at most n bytes at a character boundary.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n]
}
