package message

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestDecoded(t *testing.T) {
	tests := []struct {
		name, fields, body, want string
	}{
		{"7bit", "", "plain\r\n", "plain\r\n"},
		{"8bit", "Content-Transfer-Encoding: 8bit", "caf\xc3\xa9", "caf\xc3\xa9"},
		{"binary", "Content-Transfer-Encoding: BINARY", "\x00\x01", "\x00\x01"},
		{"base64", "Content-Transfer-Encoding: base64", "SGVsbG8s\r\nIHdvcmxk\r\n", "Hello, world"},
		{"base64 with blanks", "Content-Transfer-Encoding: base64", "  SGVs bG8s\r\n\tIHdv\tcmxk \r\n", "Hello, world"},
		{"quoted-printable", "Content-Transfer-Encoding: quoted-printable", "caf=C3=A9 =\r\nau lait=3D\r\n", "caf\xc3\xa9 au lait=\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, withHeader(tc.fields, tc.body), Limits{})
			if got := body(t, m, 0, false); got != tc.want {
				t.Errorf("Decoded = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecodedErrors(t *testing.T) {
	var de *DecodeError
	m := mustParse(t, crlf("Content-Transfer-Encoding: x-martian\n\nbegin 644 a\n"), Limits{})
	if _, err := m.Decoded(0); !errors.As(err, &de) || de.Kind != KindUnknownEncoding || !errors.Is(err, ErrDecode) {
		t.Errorf("unknown encoding: %v", err)
	}
	if _, err := m.Text(0); !errors.Is(err, ErrDecode) {
		t.Errorf("Text of unknown encoding: %v", err)
	}
	// A source that cannot be read is a bad-encoding error, and reading again returns it again.
	raw := []byte(crlf("Content-Transfer-Encoding: base64\n\nSGVsbG8sIHdvcmxk\n"))
	fail := false
	m, err := Parse(readerAtFunc(func(p []byte, off int64) (int, error) {
		if fail {
			return 0, errors.New("disk on fire")
		}
		return bytes.NewReader(raw).ReadAt(p, off)
	}), int64(len(raw)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	fail = true
	r := must(m.Decoded(0))
	_, err = io.ReadAll(r)
	if !errors.As(err, &de) || de.Kind != KindBadEncoding || de.Part != 0 || !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("error %v", err)
	}
	if _, err2 := r.Read(make([]byte, 10)); err2 != err {
		t.Errorf("second read: %v", err2)
	}
	m = mustParse(t, crlf(wellFormed), Limits{})
	for _, f := range []func(int) (io.Reader, error){m.Decoded, m.Text} {
		if _, err := f(0); !errors.Is(err, ErrInvalid) {
			t.Errorf("decoding a multipart: %v", err)
		}
		if _, err := f(99); !errors.Is(err, ErrInvalid) {
			t.Errorf("decoding part 99: %v", err)
		}
	}
}

func must(r io.Reader, err error) io.Reader {
	if err != nil {
		panic(err)
	}
	return r
}

func TestText(t *testing.T) {
	tests := []struct {
		name, fields, body, want string
	}{
		{"utf-8", "Content-Type: text/plain; charset=utf-8", "caf\xc3\xa9", "caf\xc3\xa9"},
		{"no charset passes through", "", "caf\xc3\xa9", "caf\xc3\xa9"},
		{"latin-1 quoted-printable", "Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable", "Gr=FC=DFe", "Gr\u00fc\u00dfe"},
		{"windows-1252 base64", "Content-Type: text/plain; charset=windows-1252\r\nContent-Transfer-Encoding: base64", "gCBldXJv", "\u20ac euro"},
		{"shift_jis", "Content-Type: text/plain; charset=shift_jis", "\x93\xfa\x96\x7b", "\u65e5\u672c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, withHeader(tc.fields, tc.body), Limits{})
			if got := body(t, m, 0, true); got != tc.want {
				t.Errorf("Text = %q, want %q", got, tc.want)
			}
		})
	}
	m := mustParse(t, readCorpus(t, "postern/unknown-charset.eml"), Limits{})
	var de *DecodeError
	if _, err := m.Text(0); !errors.As(err, &de) || de.Kind != KindUnknownCharset {
		t.Errorf("unknown charset: %v", err)
	}
	if got := body(t, m, 0, false); got != "Greetings, earthling.\r\n" {
		t.Errorf("Decoded of an unknown charset = %q", got)
	}
}

func TestHeaderValues(t *testing.T) {
	raw := crlf("Subject: =?utf-8?q?caf=C3=A9?=\n  au\n\tlait \nX-Multi: one\nx-multi: two\nX-Martian: =?x-martian?q?zork?= ok\nX-Raw: Gr\xc3\xbc\xc3\x9fe\n\nbody")
	m := mustParse(t, raw, Limits{})
	if got := m.HeaderValues(0, "SUBJECT", false); len(got) != 1 || got[0] != "=?utf-8?q?caf=C3=A9?=  au\tlait" {
		t.Errorf("raw subject %q", got)
	}
	if got := m.HeaderValues(0, "subject", true); len(got) != 1 || got[0] != "caf\u00e9  au\tlait" {
		t.Errorf("decoded subject %q", got)
	}
	if got := m.HeaderValues(0, "X-Multi", false); strings.Join(got, ",") != "one,two" {
		t.Errorf("X-Multi %q", got)
	}
	if got := m.HeaderValues(0, "X-Martian", true); len(got) != 1 || got[0] != "=?x-martian?q?zork?= ok" {
		t.Errorf("unknown charset word %q", got)
	}
	if got := m.HeaderValues(0, "X-Raw", true); len(got) != 1 || got[0] != "Gr\u00fc\u00dfe" {
		t.Errorf("8-bit value %q", got)
	}
}

// A part is read from the source, not from a copy: the reader sees the bytes in place.
func TestDecodedStreamsFromSource(t *testing.T) {
	raw := []byte(crlf("Content-Transfer-Encoding: base64\n\nSGVsbG8=\n"))
	m, err := Parse(readerAtFunc(func(p []byte, off int64) (int, error) {
		if off >= int64(len(raw)) {
			return 0, io.EOF
		}
		n := copy(p, raw[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}), int64(len(raw)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	copy(raw[len(raw)-10:], "SGk=\r\n\r\n\r\n") // change the source after Parse
	if got := body(t, m, 0, false); got != "Hi" {
		t.Errorf("Decoded = %q", got)
	}
}

type readerAtFunc func(p []byte, off int64) (int, error)

func (f readerAtFunc) ReadAt(p []byte, off int64) (int, error) { return f(p, off) }

// withHeader builds a message from header fields (possibly none) and a body.
func withHeader(fields, body string) string {
	if fields == "" {
		return "\r\n" + body
	}
	return fields + "\r\n\r\n" + body
}
