package message

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

var fuzzLimits = Limits{MaxSize: 1 << 20, MaxHeaderBytes: 512, MaxDepth: 4, MaxParts: 20, MaxLineLength: 256}

func fuzzSeeds(f *testing.F) {
	for _, file := range corpusFiles(f) {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) < 64<<10 {
			f.Add(b)
		}
	}
	f.Add([]byte(crlf(wellFormed)))
	f.Add([]byte(wellFormed))
	f.Add([]byte(nestingBomb(10)))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: message/rfc822\n\nContent-Type: multipart/mixed; boundary=a\n\n--a\n\nx\n--a--\n--a--\n"))
	f.Add([]byte(""))
	f.Add([]byte("\r\n"))
	f.Add([]byte("--\n--\n"))
}

// FuzzParse checks that no input makes Parse panic or hang, that the index is consistent, that WriteTo(nil)
// gives back the input, and that reading any part's content fails only with the documented errors.
func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, lim := range []Limits{{}, fuzzLimits} {
			m, err := Parse(bytes.NewReader(raw), int64(len(raw)), lim)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if err := checkIndex(m); err != nil {
				t.Fatal(err)
			}
			for _, p := range m.Parts() {
				r, err := m.Text(p.ID)
				if err == nil {
					_, err = io.Copy(io.Discard, r)
				}
				if err != nil && !errors.Is(err, ErrDecode) && !(p.Multipart && errors.Is(err, ErrInvalid)) {
					t.Fatalf("part %d: %v", p.ID, err)
				}
				m.HeaderValues(p.ID, "Subject", true)
			}
		}
	})
}

// FuzzWriteTo applies every kind of change to arbitrary input: WriteTo must not panic, must refuse or succeed
// cleanly, and what it writes must index again; a header-only change must keep the rest byte-identical.
func FuzzWriteTo(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Parse(bytes.NewReader(raw), int64(len(raw)), fuzzLimits)
		if err != nil {
			t.Fatal(err)
		}
		var hdr Changes
		_ = hdr.AddHeader("X-Fuzz", "caf\u00e9 "+strings.Repeat("word ", 20))
		_ = hdr.SetHeader("Subject", "set")
		_ = hdr.PrefixSubject("[F]")
		_ = hdr.RemoveHeader("To")
		var out bytes.Buffer
		if _, err := m.WriteTo(&out, &hdr); err == nil {
			if tail := raw[m.Parts()[0].Header.End:]; !bytes.HasSuffix(out.Bytes(), tail) {
				t.Fatal("a header change altered the body")
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("header changes: %v", err)
		}

		all := hdr
		_ = all.AppendBanner("text banner\n", "<p>html banner</p>")
		n := len(m.Parts())
		if n > 1 {
			_ = all.RemovePart(n - 1)
		}
		if n > 2 {
			_ = all.ReplacePart(1, "application/octet-stream", []byte{0, 1, 2, 3})
		}
		out.Reset()
		_, err = m.WriteTo(&out, &all)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrDecode) {
				t.Fatalf("WriteTo: %v", err)
			}
			return
		}
		m2, err := Parse(bytes.NewReader(out.Bytes()), int64(out.Len()), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if err := checkIndex(m2); err != nil {
			t.Fatal(err)
		}
	})
}
