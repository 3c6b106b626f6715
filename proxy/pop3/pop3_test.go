package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/postern/postern/proxy/mailflow"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line string
		name string
		args []string
		err  bool
	}{
		{line: "USER alice", name: "USER", args: []string{"alice"}},
		{line: "retr 1", name: "RETR", args: []string{"1"}},
		{line: "TOP  2   10", name: "TOP", args: []string{"2", "10"}},
		{line: "capa", name: "CAPA"},
		{line: "", err: true},
		{line: "   ", err: true},
		{line: "RE", err: true},
		{line: "XCLIENT ADDR=192.0.2.1", name: "XCLIENT", args: []string{"ADDR=192.0.2.1"}},
		{line: "ABCDEFGHIJKLMNOPQ 1", err: true},
		{line: "R3TR 1", err: true},
		{line: "USER a\x00b", err: true},
		{line: "USER a\rb", err: true},
		{line: "NOOP 1 2 3 4 5 6 7 8 9", err: true},
		{line: "USER j\xc3\xb6rg", name: "USER", args: []string{"j\xc3\xb6rg"}},
	} {
		cmd, err := ParseCommand([]byte(tc.line))
		if tc.err {
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("%q: err = %v, want ErrSyntax", tc.line, err)
			}
			continue
		}
		if err != nil || cmd.Name != tc.name || strings.Join(cmd.Args, "|") != strings.Join(tc.args, "|") {
			t.Errorf("%q: got %+v, %v; want %s %q", tc.line, cmd, err, tc.name, tc.args)
		}
	}
}

func TestPassArgumentKeepsSpaces(t *testing.T) {
	if got := PassArgument([]byte("PASS my secret  pw")); got != "my secret  pw" {
		t.Fatalf("got %q", got)
	}
	if got := (Command{Name: "PASS", Args: []string{"x"}}).String(); got != "PASS ***" {
		t.Fatalf("String hides nothing: %q", got)
	}
}

func TestMessageNumber(t *testing.T) {
	for s, want := range map[string]int{"1": 1, "42": 42, "0": 0, "-1": 0, "1x": 0, "": 0, "1234567890": 0, "+1": 0} {
		n, ok := MessageNumber(s)
		if want == 0 && ok || want != 0 && (!ok || n != want) {
			t.Errorf("MessageNumber(%q) = %d, %v", s, n, ok)
		}
	}
	if n, ok := Count("0"); !ok || n != 0 {
		t.Errorf("Count(0) = %d, %v", n, ok)
	}
}

func TestCommandLineBound(t *testing.T) {
	long := "USER " + strings.Repeat("a", 2000) + "\r\nNOOP\r\n"
	r := NewCommandReader(bufio.NewReaderSize(strings.NewReader(long), 16), 1024)
	if _, err := r.ReadCommand(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("err = %v, want ErrLineTooLong", err)
	}
	r = NewCommandReader(bufio.NewReaderSize(strings.NewReader("USER "+strings.Repeat("a", 600)+"\r\n"), 16), 1024)
	if cmd, err := r.ReadCommand(); err != nil || len(cmd.Args[0]) != 600 {
		t.Fatalf("a line under the bound: %v", err)
	}
	r = NewCommandReader(bufio.NewReader(strings.NewReader("NOOP\nQUIT")), 1024)
	if cmd, err := r.ReadCommand(); err != nil || cmd.Name != "NOOP" {
		t.Fatalf("LF-terminated line: %v %v", cmd, err)
	}
	if _, err := r.ReadCommand(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("unterminated last line: %v", err)
	}
}

func TestParseResponse(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Response
		err  bool
	}{
		{line: "+OK", want: Response{OK: true}},
		{line: "+OK 2 320", want: Response{OK: true, Text: "2 320"}},
		{line: "-ERR [SYS/TEMP] try later", want: Response{Code: "SYS/TEMP", Text: "try later"}},
		{line: "-ERR [AUTH] bad password", want: Response{Code: "AUTH", Text: "bad password"}},
		{line: "-ERR", want: Response{}},
		{line: "+OKAY", err: true},
		{line: "HTTP/1.1 200 OK", err: true},
		{line: "", err: true},
	} {
		got, err := ParseResponse([]byte(tc.line))
		if tc.err != (err != nil) || !tc.err && got != tc.want {
			t.Errorf("%q: got %+v, %v", tc.line, got, err)
		}
	}
	if l := Err(CodeSysTemp, "later").Line(); l != "-ERR [SYS/TEMP] later" {
		t.Errorf("Line: %q", l)
	}
	if d := Err(CodeSysTemp, "later").Detail(); d != "[SYS/TEMP] later" {
		t.Errorf("Detail: %q", d)
	}
}

// TestMessageRoundTrip writes content as a multi-line body and reads it back through the DotReader: every byte,
// CRLF and leading dots included, comes back.
func TestMessageRoundTrip(t *testing.T) {
	for _, content := range []string{
		"Subject: x\r\n\r\nbody\r\n",
		"Subject: x\r\n\r\n.\r\n..\r\n.leading dot\r\nend\r\n",
		".starts with a dot\r\n",
		"",
		strings.Repeat("a", 100000) + "\r\n.\r\n",
	} {
		var wire bytes.Buffer
		w := bufio.NewWriter(&wire)
		if err := WriteMessage(w, strings.NewReader(content), make([]byte, 512)); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if !bytes.HasSuffix(wire.Bytes(), []byte("\r\n.\r\n")) && content != "" {
			t.Fatalf("no terminator: %q", wire.String())
		}
		got, err := io.ReadAll(mailflow.NewDotReader(bufio.NewReader(&wire)))
		if err != nil || string(got) != content {
			t.Fatalf("round trip of %.40q: got %.40q, %v", content, got, err)
		}
	}
	// Content without a final line end gets one, so that the terminator stands on its own line.
	var wire bytes.Buffer
	w := bufio.NewWriter(&wire)
	WriteMessage(w, strings.NewReader("a\r\nb"), make([]byte, 512))
	w.Flush()
	if wire.String() != "a\r\nb\r\n.\r\n" {
		t.Fatalf("got %q", wire.String())
	}
}

func TestTopLength(t *testing.T) {
	msg := "A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n"
	for n, want := range map[int]string{
		0: "A: 1\r\nB: 2\r\n\r\n", 1: "A: 1\r\nB: 2\r\n\r\nl1\r\n", 3: msg, 10: msg,
	} {
		got, err := TopLength(strings.NewReader(msg), int64(len(msg)), n)
		if err != nil || msg[:got] != want {
			t.Errorf("TOP %d: %q, %v", n, msg[:got], err)
		}
	}
	noBody := "A: 1\r\nB: 2\r\n"
	if got, _ := TopLength(strings.NewReader(noBody), int64(len(noBody)), 0); got != int64(len(noBody)) {
		t.Errorf("header only: %d", got)
	}
	long := "A: 1\r\n\r\n" + strings.Repeat("x", 100000) + "\r\nsecond\r\n"
	if got, _ := TopLength(strings.NewReader(long), int64(len(long)), 1); got != int64(len(long)-len("second\r\n")) {
		t.Errorf("long body line: %d of %d", got, len(long))
	}
}

// fakeServer answers a client over a pipe with a script: each expected line and its reply.
func fakeServer(t *testing.T, script []string) *Client {
	t.Helper()
	c, s := net.Pipe()
	go func() {
		defer s.Close()
		br := bufio.NewReader(s)
		for i := 0; i+1 < len(script); i += 2 {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if strings.TrimRight(line, "\r\n") != script[i] {
				s.Write([]byte("-ERR unexpected " + line))
				return
			}
			s.Write([]byte(script[i+1]))
		}
	}()
	t.Cleanup(func() { c.Close() })
	return NewClient(c, 1024)
}

func TestClientCapaAndLines(t *testing.T) {
	c := fakeServer(t, []string{
		"CAPA", "+OK\r\nTOP\r\nUIDL\r\nSASL PLAIN LOGIN\r\nEXPIRE 30\r\n.\r\n",
		"UIDL", "+OK\r\n1 abc\r\n..2 dotted\r\n.\r\n",
	})
	caps, err := c.Capa()
	if err != nil || !caps.Has("TOP") || strings.Join(caps["SASL"], " ") != "PLAIN LOGIN" || caps["EXPIRE"][0] != "30" {
		t.Fatalf("caps %v, %v", caps, err)
	}
	r, err := c.Cmd("UIDL")
	if err != nil || !r.OK {
		t.Fatal(r, err)
	}
	lines, err := c.Lines(10)
	if err != nil || len(lines) != 2 || lines[1] != ".2 dotted" {
		t.Fatalf("lines %q, %v", lines, err)
	}
}

func TestClientRefusesGarbageAndLineBreaks(t *testing.T) {
	c := fakeServer(t, []string{"NOOP", "HELLO WORLD\r\n"})
	if _, err := c.Cmd("NOOP"); !errors.Is(err, ErrProtocol) {
		t.Fatalf("garbage: %v", err)
	}
	c = fakeServer(t, nil)
	if err := c.Send("USER a\r\nDELE 1"); err == nil {
		t.Fatal("a command with a line break was sent")
	}
}

func TestClientAuth(t *testing.T) {
	c := fakeServer(t, []string{"AUTH PLAIN AGFsaWNlAHNlY3JldA==", "+OK logged in\r\n"})
	r, err := c.Auth(sasl.NewPlainClient("", "alice", "secret"))
	if err != nil || !r.OK {
		t.Fatalf("PLAIN: %+v, %v", r, err)
	}
	c = fakeServer(t, []string{"AUTH LOGIN YWxpY2U=", "+ UGFzc3dvcmQ6\r\n", "c2VjcmV0", "-ERR [AUTH] no\r\n"})
	r, err = c.Auth(sasl.NewLoginClient("alice", "secret"))
	if err != nil || r.OK || r.Code != CodeAuth {
		t.Fatalf("LOGIN: %+v, %v", r, err)
	}
}

func TestSASLEncoding(t *testing.T) {
	if EncodeSASL(nil) != "=" {
		t.Fatal("empty")
	}
	if b, err := DecodeSASL("="); err != nil || len(b) != 0 {
		t.Fatal("decode empty")
	}
	if _, err := DecodeSASL("*"); !errors.Is(err, ErrAuthCancelled) {
		t.Fatal("cancel")
	}
	if _, err := DecodeSASL("!!"); err == nil {
		t.Fatal("bad base64")
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"USER alice", "RETR 1", "TOP 1 10", "AUTH PLAIN =", "", "\x00", "STLS"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := ParseCommand(line)
		if err != nil {
			return
		}
		if len(cmd.Name) < 3 || len(cmd.Name) > maxKeyword || strings.ToUpper(cmd.Name) != cmd.Name || len(cmd.Args) > MaxArgs {
			t.Fatalf("bad command %+v from %q", cmd, line)
		}
		for _, a := range cmd.Args {
			if strings.ContainsAny(a, "\r\n\x00 ") || a == "" {
				t.Fatalf("bad argument %q from %q", a, line)
			}
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{"+OK", "-ERR [SYS/TEMP] x", "+OK 1 2", "-ERR [", "garbage"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseResponse(line)
		if err != nil {
			return
		}
		// What parses renders back to a line that parses to the same response.
		r2, err := ParseResponse([]byte(r.Line()))
		if err != nil || r2.OK != r.OK || r2.Code != r.Code {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", line, r, r.Line(), r2, err)
		}
	})
}

func FuzzMessageRoundTrip(f *testing.F) {
	f.Add([]byte("a\r\n.b\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		// Content as the line guard leaves it: CRLF only, ending in CRLF.
		s := strings.ReplaceAll(strings.ReplaceAll(string(body), "\r", ""), "\n", "\r\n")
		if s != "" && !strings.HasSuffix(s, "\r\n") {
			s += "\r\n"
		}
		var wire bytes.Buffer
		w := bufio.NewWriter(&wire)
		WriteMessage(w, strings.NewReader(s), make([]byte, 64))
		w.Flush()
		got, err := io.ReadAll(mailflow.NewDotReader(bufio.NewReader(&wire)))
		if err != nil || string(got) != s {
			t.Fatalf("%q: got %q, %v", s, got, err)
		}
	})
}
