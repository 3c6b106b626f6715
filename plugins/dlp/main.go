// Command dlp is a Postern plugin that finds payment card numbers (Luhn and issuer checked) and IBANs (country
// length and mod-97 checked) in a message's text parts and text attachments, and tags, quarantines or rejects
// the message. Numbers never appear in full in its logs or tags.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o dlp.wasm . (see README.md).
package main

import (
	"errors"
	"fmt"
	"strconv"
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

// setup runs once per instance: it reads the configuration and compiles the candidate patterns in the host.
func setup() error {
	raw, err := postern.ConfigJSON()
	if err != nil {
		return fmt.Errorf("reading the configuration: %w", err)
	}
	if cfg, err = parseConfig(raw); err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSuffix(patternSet, "\n"), "\n")
	if patterns, err = postern.Compile(lines...); err != nil {
		return fmt.Errorf("compiling the patterns: %w", err)
	}
	return nil
}

// maxCandidates is how many candidate runs the plugin asks the host for per part: the host's limit (ABI §6). A
// full list means the part may hold more than was reported.
const maxCandidates = 1000

// maxMessageCandidates bounds the candidate runs examined in one message, whatever its number of parts, so the
// call stays within its time and memory; parts after the budget is spent count as truncated.
const maxMessageCandidates = 10 * maxCandidates

// hit is a distinct number found in the message, and where it was first seen.
type hit struct {
	finding
	part int
}

// scan is the message hook: it checks every scanned part, counts distinct numbers and acts on them.
func scan(m *postern.Message) error {
	parts, err := m.Parts()
	if err != nil {
		return fmt.Errorf("listing parts: %w", err)
	}
	var hits []hit
	var truncated []string
	seen := map[string]bool{}
	examined := 0
	for _, p := range parts {
		if p.Multipart || !cfg.scans(p.ContentType, p.Filename) {
			continue
		}
		if examined >= maxMessageCandidates {
			truncated = append(truncated, fmt.Sprintf("part %d and later", p.ID))
			break
		}
		fs, n, err := scanPart(m, p.ID)
		if err != nil {
			return fmt.Errorf("scanning part %d: %w", p.ID, err)
		}
		examined += n
		if n >= maxCandidates {
			truncated = append(truncated, "part "+strconv.Itoa(p.ID))
		}
		for _, f := range fs {
			if (f.Kind == kindCard && !cfg.cards) || (f.Kind == kindIBAN && !cfg.ibans) || seen[f.Number] {
				continue
			}
			// The same number in a text/plain part and its text/html alternative is one leak, not two.
			seen[f.Number] = true
			hits = append(hits, hit{f, p.ID})
		}
	}
	if len(truncated) > 0 {
		// More than maxCandidates digit runs in one part: the rest of it was not examined. A part like that
		// is bulk numeric data, and padding is how one would hide a number after the limit.
		postern.Logf(postern.LevelWarn, "too many candidate numbers (%d per part, %d per message): %s not examined completely",
			maxCandidates, maxMessageCandidates, strings.Join(truncated, ", "))
		if err := m.Tag("dlp.truncated", clip(strings.Join(truncated, ", "), 1024)); err != nil {
			return fmt.Errorf("tag dlp.truncated: %w", err)
		}
	}
	if len(hits) == 0 && len(truncated) == 0 {
		return nil
	}
	cards, ibans, summary := summarize(hits)
	reached := len(hits) >= cfg.MinMatches || (len(truncated) > 0 && cfg.actOnTruncated())
	if !reached {
		postern.Logf(postern.LevelDebug, "%d number(s) below min_matches %d: %s", len(hits), cfg.MinMatches, summary)
		return nil
	}
	postern.Logf(postern.LevelInfo, "found %d card number(s) and %d IBAN(s): %s; action %s", cards, ibans, summary, cfg.Action)
	for _, t := range [][2]string{
		{"dlp.cards", strconv.Itoa(cards)},
		{"dlp.ibans", strconv.Itoa(ibans)},
		{"dlp.found", clip(summary, 1024)},
	} {
		if err := m.Tag(t[0], t[1]); err != nil {
			return fmt.Errorf("tag %s: %w", t[0], err)
		}
	}
	if cfg.ScorePerMatch != 0 {
		if err := m.Score(cfg.ScorePerMatch * float64(len(hits))); err != nil {
			return fmt.Errorf("scoring: %w", err)
		}
	}
	switch cfg.Action {
	case actionReject:
		err = m.Reject(cfg.Code, "5.7.1", cfg.Text)
	case actionQuarantine:
		err = m.Quarantine(clip(fmt.Sprintf("dlp: %d card number(s), %d IBAN(s): %s", cards, ibans, summary), 512))
	}
	if err != nil {
		return fmt.Errorf("setting the verdict: %w", err)
	}
	return nil
}

// scanPart asks the host for candidate runs in one part's text and checks them. The part is searched as UTF-8
// text; if its charset is unknown, as decoded bytes; if it cannot be decoded at all, as received. n is the
// number of candidates examined; when it reaches maxCandidates the host's list was full and the part may hold
// more.
func scanPart(m *postern.Message, id int) (fs []finding, n int, err error) {
	mode := postern.ModeText
	ms, err := m.Match(id, mode, patterns, maxCandidates)
	if errors.Is(err, postern.ErrDecode) {
		mode = postern.ModeDecoded
		ms, err = m.Match(id, mode, patterns, maxCandidates)
	}
	if errors.Is(err, postern.ErrDecode) {
		mode = postern.ModeRaw
		ms, err = m.Match(id, mode, patterns, maxCandidates)
	}
	if err != nil {
		return nil, 0, err
	}
	found := make([]match, 0, len(ms))
	for _, x := range ms {
		text, err := x.Text()
		if err != nil {
			return nil, 0, fmt.Errorf("reading match [%d,%d): %w", x.Start, x.End, err)
		}
		found = append(found, match{Pattern: x.Pattern, Start: int64(x.Start), End: int64(x.End), Text: text})
	}
	return analyze(found), len(ms), nil
}

// summarize counts the hits and lists them redacted, in the order found: "4111********1111 (part 1), ...".
func summarize(hits []hit) (cards, ibans int, summary string) {
	list := make([]string, 0, len(hits))
	for _, h := range hits {
		if h.Kind == kindCard {
			cards++
		} else {
			ibans++
		}
		list = append(list, fmt.Sprintf("%s %s (part %d)", h.Kind, redact(h.Number), h.part))
	}
	return cards, ibans, strings.Join(list, ", ")
}

// clip cuts s to at most n bytes at a character boundary (s is built by the plugin and is valid UTF-8).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n]
}
