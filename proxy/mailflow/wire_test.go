package mailflow

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chunks feeds p to f in random pieces, as network reads deliver it.
func chunks(r *rand.Rand, p []byte, f func([]byte) error) error {
	for len(p) > 0 {
		n := 1 + r.IntN(min(len(p), 7))
		if err := f(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func TestLineGuardReject(t *testing.T) {
	cases := []struct {
		in     string
		what   string
		offset int64
	}{
		{"a\r\nb\r\n", "", 0},
		{"", "", 0},
		{"a\nb", "bare LF", 1},
		{"ab\rc\r\n", "bare CR", 2},
		{"ab\r\r\n", "bare CR", 2},
		{"abc\r", "bare CR", 3},
		{"a\r\n\x00b", "NUL byte", 3},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range cases {
		for range 20 {
			var out bytes.Buffer
			g := &LineGuard{}
			err := chunks(r, []byte(tc.in), func(p []byte) error { return g.Write(&out, p) })
			if err == nil {
				err = g.Finish(&out)
			}
			var bn *BareNewlineError
			switch {
			case tc.what == "" && err != nil:
				t.Fatalf("%q: %v", tc.in, err)
			case tc.what == "" && out.String() != tc.in:
				t.Fatalf("%q: passed %q", tc.in, out.String())
			case tc.what != "" && (!errors.As(err, &bn) || bn.What != tc.what || bn.Offset != tc.offset):
				t.Fatalf("%q: error %v, want %s at %d", tc.in, err, tc.what, tc.offset)
			}
		}
	}
}

// TestLineGuardRandom checks the guard's whole-buffer check against a byte-by-byte reading of the rule on random
// content cut at random: the first offence, what and where, or the content passed unchanged.
func TestLineGuardRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("\r\n\r\n\r\nab\x00")
	for range 20000 {
		in := make([]byte, r.IntN(40))
		for i := range in {
			in[i] = alphabet[r.IntN(len(alphabet)-1)]
		}
		if r.IntN(10) == 0 {
			in = append(in, 0)
		}
		want, wantAt := "", int64(0)
		for i := 0; i < len(in) && want == ""; i++ {
			switch {
			case in[i] == 0:
				want, wantAt = "NUL byte", int64(i)
			case in[i] == '\n':
				want, wantAt = "bare LF", int64(i)
			case in[i] == '\r' && (i+1 == len(in) || in[i+1] != '\n'):
				want, wantAt = "bare CR", int64(i)
			case in[i] == '\r':
				i++
			}
		}
		var out bytes.Buffer
		g := &LineGuard{}
		err := chunks(r, in, func(p []byte) error { return g.Write(&out, p) })
		if err == nil {
			err = g.Finish(&out)
		}
		var bn *BareNewlineError
		switch {
		case want == "" && (err != nil || !bytes.Equal(out.Bytes(), in)):
			t.Fatalf("%q: error %v, passed %q", in, err, out.Bytes())
		case want != "" && (!errors.As(err, &bn) || bn.What != want || bn.Offset != wantAt):
			t.Fatalf("%q: error %v, want %s at %d", in, err, want, wantAt)
		}
	}
}

func TestLineGuardNormalize(t *testing.T) {
	cases := map[string]string{
		"a\r\nb\r\n":    "a\r\nb\r\n",
		"a\nb\n":        "a\r\nb\r\n",
		"a\rb\r":        "a\r\nb\r\n",
		"a\r\r\nb":      "a\r\n\r\nb",
		"\x00a\x00\r\n": "a\r\n",
		"\n.\n":         "\r\n.\r\n",
	}
	r := rand.New(rand.NewPCG(3, 4))
	for in, want := range cases {
		for range 20 {
			var out bytes.Buffer
			g := &LineGuard{Normalize: true}
			if err := chunks(r, []byte(in), func(p []byte) error { return g.Write(&out, p) }); err != nil {
				t.Fatal(err)
			}
			if err := g.Finish(&out); err != nil {
				t.Fatal(err)
			}
			if out.String() != want {
				t.Fatalf("%q: got %q, want %q", in, out.String(), want)
			}
		}
	}
}

// TestDotStufferMatchesDotWriter compares the bulk dot-stuffer with net/textproto's DotWriter, which the go-smtp
// client uses, on CRLF content cut into random pieces.
func TestDotStufferMatchesDotWriter(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	lines := []string{"", ".", "..", ".x", "x.", "abc", ". ", "x\r\n.", "\x80."}
	for range 500 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(lines[r.IntN(len(lines))])
			b.WriteString("\r\n")
		}
		content := []byte(b.String())

		var want bytes.Buffer
		bw := bufio.NewWriter(&want)
		dw := textproto.NewWriter(bw).DotWriter()
		dw.Write(content)
		dw.Close()

		var got bytes.Buffer
		d := &DotStuffer{W: &got}
		direct := content
		if bytes.HasSuffix(content, []byte("\r\n")) {
			direct = content[:len(content)-2]
		}
		if err := chunks(r, direct, func(p []byte) error { _, err := d.Write(p); return err }); err != nil {
			t.Fatal(err)
		}
		// What sendContent leaves to the DotWriter: the last CRLF, then the terminator.
		got.WriteString("\r\n.\r\n")
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("content %q:\n got %q\nwant %q", content, got.Bytes(), want.Bytes())
		}
	}
}

func TestSpoolSpillsAboveThreshold(t *testing.T) {
	dir := t.TempDir()
	sp := NewSpool(dir, 100, true)
	small := bytes.Repeat([]byte("a"), 60)
	sp.Write(small)
	if !sp.InMemory() {
		t.Fatal("spilled below the threshold")
	}
	sp.Write(small)
	if sp.InMemory() {
		t.Fatal("not spilled above the threshold")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("spool file left visible in %s: %v", dir, entries)
	}
	got, _ := io.ReadAll(sp.Reader())
	if !bytes.Equal(got, append(small, small...)) || sp.Size() != 120 || len(sp.Sum()) != 64 {
		t.Fatalf("spooled content %d bytes, size %d", len(got), sp.Size())
	}
	sp.Close()
}

func TestSpoolReportsDiskErrors(t *testing.T) {
	sp := NewSpool(filepath.Join(t.TempDir(), "missing"), 10, false)
	defer sp.Close()
	if _, err := sp.Write(make([]byte, 20)); err == nil {
		t.Fatal("no error for an unusable spool directory")
	}
}

// BenchmarkLineGuard measures the line-ending check on a 10 KiB message with CRLF line endings only.
func BenchmarkLineGuard(b *testing.B) {
	msg := []byte("From: a@example.org\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 78)+"\r\n", 128))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		g := LineGuard{}
		if err := g.Write(io.Discard, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDotReaderRoundTrip stuffs random CRLF content with DotStuffer and reads it back with DotReader, in random
// read sizes over a small buffer: the content comes back byte for byte, CRLF kept, and what follows the
// terminating line is left unread.
func TestDotReaderRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	lines := []string{"", ".", "..", ".x", "x.", "abc", ". ", "\x80.", strings.Repeat("y", 40)}
	for range 500 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(lines[r.IntN(len(lines))])
			b.WriteString("\r\n")
		}
		content := b.String()
		var wire bytes.Buffer
		d := &DotStuffer{W: &wire}
		d.Write([]byte(content))
		wire.WriteString(".\r\nNEXT\r\n")

		br := bufio.NewReaderSize(&wire, 16)
		dr := NewDotReader(br)
		var got bytes.Buffer
		buf := make([]byte, 64)
		for {
			n, err := dr.Read(buf[:1+r.IntN(len(buf))])
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("content %q: %v", content, err)
			}
		}
		if got.String() != content {
			t.Fatalf("content %q: got %q", content, got.String())
		}
		if rest, _ := io.ReadAll(br); string(rest) != "NEXT\r\n" {
			t.Fatalf("content %q: left %q after the terminator", content, rest)
		}
	}
}

func TestDotReaderEndings(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"a\r\n..b\r\n.\r\n", "a\r\n.b\r\n", io.EOF},
		{"a\n.\n", "a\n", io.EOF},
		{"a\r\nb", "a\r\nb", io.ErrUnexpectedEOF},
		{"", "", io.ErrUnexpectedEOF},
		{".x\r\n.", "x\r\n", io.ErrUnexpectedEOF},
	} {
		got, err := io.ReadAll(NewDotReader(bufio.NewReader(strings.NewReader(tc.in))))
		if tc.err == io.EOF && err != nil || tc.err != io.EOF && !errors.Is(err, tc.err) || string(got) != tc.want {
			t.Errorf("%q: got %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestLineGuardNormalizeRandom checks normalize mode, whose clean chunks skip the byte loop, against a model of
// the repair on random content cut into random pieces: every bare CR and LF becomes CRLF, NULs go.
func TestLineGuardNormalizeRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	alphabet := []byte("ab\r\n\r\n\x00.")
	for range 3000 {
		in := make([]byte, r.IntN(200))
		for i := range in {
			in[i] = alphabet[r.IntN(len(alphabet))]
		}
		var want []byte
		for i := 0; i < len(in); i++ {
			switch c := in[i]; c {
			case '\r':
				want = append(want, '\r', '\n')
				if i+1 < len(in) && in[i+1] == '\n' {
					i++
				}
			case '\n':
				want = append(want, '\r', '\n')
			case 0:
			default:
				want = append(want, c)
			}
		}
		var out bytes.Buffer
		g := &LineGuard{Normalize: true}
		if err := chunks(r, in, func(p []byte) error { return g.Write(&out, p) }); err != nil {
			t.Fatal(err)
		}
		if err := g.Finish(&out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("%q: got %q, want %q", in, out.Bytes(), want)
		}
	}
}
