package message

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gomessage "github.com/emersion/go-message"
)

// goMessageReads reports whether go-message reads and walks raw without error.
func goMessageReads(raw string) bool {
	e, err := gomessage.Read(strings.NewReader(raw))
	if err != nil {
		return false
	}
	return e.Walk(func(_ []int, e *gomessage.Entity, err error) error {
		if err != nil {
			return err
		}
		if e.MultipartReader() == nil {
			_, err = io.Copy(io.Discard, e.Body)
		}
		return err
	}) == nil
}

func TestCorpusRoundTrip(t *testing.T) {
	for _, file := range corpusFiles(t) {
		name, _ := filepath.Rel(filepath.Join(repoRoot(), "testdata", "corpus"), file)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			raw := string(b)
			m := mustParse(t, raw, Limits{}) // checks the index and that WriteTo(nil) is the input
			if out := write(t, m, &Changes{}); out != raw {
				t.Fatal("empty changes changed the message")
			}
			// Every part decodes, or fails with a DecodeError; multiparts are refused.
			for _, p := range m.Parts() {
				r, err := m.Text(p.ID)
				if err == nil {
					_, err = io.Copy(io.Discard, r)
				}
				if err != nil && !errors.Is(err, ErrDecode) && !(p.Multipart && errors.Is(err, ErrInvalid)) {
					t.Errorf("part %d: %v", p.ID, err)
				}
			}

			// Header-only changes leave everything after the message header byte-identical.
			if !m.meta[0].hdrDone {
				return
			}
			c := changes(t,
				func(c *Changes) error { return c.AddHeader("X-Postern-Scanned", "yes") },
				func(c *Changes) error { return c.SetHeader("X-Mailer", "Postern \u00fcber alles") },
				func(c *Changes) error { return c.RemoveHeader("Received") },
				func(c *Changes) error { return c.PrefixSubject("[EXT]") },
			)
			out := write(t, m, c)
			tail := raw[m.Parts()[0].Header.End:]
			if !strings.HasSuffix(out, tail) {
				t.Fatal("the bytes after the header changed")
			}
			m2 := mustParse(t, out, Limits{})
			if len(m2.Parts()) != len(m.Parts()) {
				t.Fatalf("%d parts after a header change, %d before", len(m2.Parts()), len(m.Parts()))
			}
			for i := range m.Parts() {
				if i > 0 && whole(m, i) != whole(m2, i) {
					t.Errorf("part %d changed", i)
				}
			}
			if v := m2.HeaderValues(0, "X-Mailer", true); len(v) != 1 || v[0] != "Postern \u00fcber alles" {
				t.Errorf("X-Mailer %q", v)
			}
			if v := m2.HeaderValues(0, "Subject", true); len(v) == 0 || !strings.HasPrefix(v[0], "[EXT]") {
				t.Errorf("Subject %q", v)
			}
			if goMessageReads(raw) && !goMessageReads(out) {
				t.Error("go-message reads the input but not the output")
			}
		})
	}
}

// What the index makes of each hostile message of testdata/corpus/postern.
func TestPosternCorpus(t *testing.T) {
	tests := []struct {
		file    string
		limit   string
		defects []string // sorted kinds
		parts   int
	}{
		{"rfc2231-continuation.eml", "", nil, 3},
		{"rfc2231-latin1.eml", "", nil, 3},
		{"rfc2231-gap.eml", "", []string{KindBadHeader}, 3},
		{"filename-conflict.eml", "", []string{KindBadHeader}, 3}, // two conflicts, one defect with a count
		{"rfc2047-name.eml", "", nil, 3},
		{"double-extension.eml", "", nil, 3},
		{"path-trailing-dot.eml", "", nil, 3},
		{"unterminated-quote.eml", "", []string{KindBadHeader}, 3},
		{"forwarded-exe.eml", "", nil, 6},
		{"unclosed-boundary.eml", "", []string{KindUnclosedBoundary}, 3},
		{"bad-base64.eml", "", []string{KindBadEncoding}, 1}, // decoded leniently, flagged
		{"unknown-charset.eml", "", []string{KindUnknownCharset}, 1},
		{"bare-lf.eml", "", nil, 3},
		{"8bit-headers.eml", "", []string{KindBadHeader}, 1},
		{"giant-header.eml", KindHeaderLimit, []string{KindHeaderLimit}, 1},
		{"overlong-line.eml", KindLineLimit, []string{KindLineLimit}, 3},
		{"qp-and-base64-text.eml", "", nil, 5},
		{"multipart-base64-cte.eml", "", []string{KindBadEncoding}, 2},
	}
	files, _ := filepath.Glob(filepath.Join(repoRoot(), "testdata", "corpus", "postern", "*.eml"))
	if len(files) != len(tests) {
		t.Errorf("%d files in testdata/corpus/postern, %d tested", len(files), len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			m := mustParse(t, readCorpus(t, "postern/"+tc.file), Limits{})
			got := kinds(m.Defects())
			slices.Sort(got)
			if m.LimitExceeded() != tc.limit || fmt.Sprint(got) != fmt.Sprint(tc.defects) || len(m.Parts()) != tc.parts {
				t.Errorf("limit %q, %d parts, defects %v", m.LimitExceeded(), len(m.Parts()), m.Defects())
			}
		})
	}
	// The 8-bit header: the UTF-8 subject reads as is, the Latin-1 byte is flagged, not lost.
	m := mustParse(t, readCorpus(t, "postern/8bit-headers.eml"), Limits{})
	if v := m.HeaderValues(0, "Subject", true); v[0] != "Gr\u00fc\u00dfe aus K\u00f6ln \u2013 \u00fcn\u00efc\u00f6d\u00e9" {
		t.Errorf("subject %q", v)
	}
	if v := m.HeaderValues(0, "From", false); !bytes.Contains([]byte(v[0]), []byte{'J', 0xfc, 'r'}) {
		t.Errorf("from %q", v)
	}
	// The overlong line stops indexing before the hidden .exe: the limit, not a silent miss, tells.
	m = mustParse(t, readCorpus(t, "postern/overlong-line.eml"), Limits{})
	for _, p := range m.Parts() {
		if p.Filename != "" {
			t.Errorf("part %d has a file name %q after the line limit", p.ID, p.Filename)
		}
	}
}
