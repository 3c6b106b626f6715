package mailflow

import (
	"bytes"
	"io"
	"net/mail"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"

	"github.com/postern/postern/proxy/message"
)

func parseMsg(t *testing.T, raw string) *message.Message {
	t.Helper()
	m, err := message.Parse(strings.NewReader(raw), int64(len(raw)), message.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const original = "Date: Tue, 3 Feb 2026 10:11:12 +0100\r\n" +
	"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>\r\n" +
	"To: Alice <alice@example.com>, bob@example.com\r\n" +
	"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and an invoice\r\n" +
	"Message-ID: <orig.1@example.org>\r\n" +
	"In-Reply-To: <parent@example.org>\r\n" +
	"References: <root@example.org>\r\n <parent@example.org>\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"EICAR body\r\n"

var decision = Withheld{Policy: "malware", Action: "reject", Reason: "Virus found: EICAR-Test-File",
	Reference: "q-2026-0001", Hostname: "mx.example.net", Date: time.Date(2026, 2, 4, 0, 0, 0, 0, time.UTC)}

// readBoth parses the notice with net/mail and with go-message, and returns the net/mail message and the body
// go-message decoded.
func readBoth(t *testing.T, notice []byte) (*mail.Message, string) {
	t.Helper()
	nm, err := mail.ReadMessage(bytes.NewReader(notice))
	if err != nil {
		t.Fatalf("net/mail: %v\n%s", err, notice)
	}
	mr, err := gomail.CreateReader(bytes.NewReader(notice))
	if err != nil {
		t.Fatalf("go-message: %v\n%s", err, notice)
	}
	p, err := mr.NextPart()
	if err != nil {
		t.Fatalf("go-message part: %v", err)
	}
	body, err := io.ReadAll(p.Body)
	if err != nil {
		t.Fatal(err)
	}
	return nm, string(body)
}

func TestNotice(t *testing.T) {
	notice := Notice(parseMsg(t, original), decision)
	nm, body := readBoth(t, notice)
	subject, err := (&gomailHeader{nm.Header}).text("Subject")
	if err != nil || subject != "[withheld] Grüße and an invoice" {
		t.Errorf("Subject = %q, %v", subject, err)
	}
	if d, err := nm.Header.Date(); err != nil || !d.Equal(time.Date(2026, 2, 3, 9, 11, 12, 0, time.UTC)) {
		t.Errorf("Date = %v, %v; want the original's", d, err)
	}
	from, err := nm.Header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Address != "joerg@example.org" || from[0].Name != "Jörg" {
		t.Errorf("From = %v, %v", from, err)
	}
	to, err := nm.Header.AddressList("To")
	if err != nil || len(to) != 2 || to[1].Address != "bob@example.com" {
		t.Errorf("To = %v, %v", to, err)
	}
	if got := nm.Header.Get("In-Reply-To"); got != "<parent@example.org>" {
		t.Errorf("In-Reply-To = %q", got)
	}
	if got := nm.Header.Get("References"); got != "<root@example.org> <parent@example.org>" {
		t.Errorf("References = %q", got)
	}
	id := nm.Header.Get("Message-ID")
	if id == "<orig.1@example.org>" || !strings.HasPrefix(id, "<withheld.") || !strings.HasSuffix(id, "@mx.example.net>") {
		t.Errorf("Message-ID = %q, want one of its own", id)
	}
	if nm.Header.Get("Auto-Submitted") != "auto-generated" || nm.Header.Get("X-Postern-Withheld") != "q-2026-0001" {
		t.Errorf("Auto-Submitted %q, X-Postern-Withheld %q", nm.Header.Get("Auto-Submitted"), nm.Header.Get("X-Postern-Withheld"))
	}
	for _, want := range []string{"withheld", "Policy:     malware", "Action:     reject",
		"Reason:     Virus found: EICAR-Test-File", "Reference:  q-2026-0001", "Subject:    Grüße and an invoice",
		"Message-ID: <orig.1@example.org>", "The original is kept in quarantine."} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(string(notice), "EICAR body") {
		t.Error("the notice carries the original's body")
	}
	// The same decision on the same original is the same bytes; another decision another Message-ID.
	if again := Notice(parseMsg(t, original), decision); !bytes.Equal(again, notice) {
		t.Error("two notices for the same withheld message differ")
	}
	other := decision
	other.Reference = "q-2026-0002"
	nm2, _ := readBoth(t, Notice(parseMsg(t, original), other))
	if nm2.Header.Get("Message-ID") == id {
		t.Error("two decisions gave the same Message-ID")
	}
	checkWellFormed(t, notice)
}

// gomailHeader decodes a field's encoded words with go-message, the way mail clients do.
type gomailHeader struct{ h mail.Header }

func (g *gomailHeader) text(name string) (string, error) {
	var h gomail.Header
	h.Set(name, g.h.Get(name))
	return h.Text(name)
}

// checkWellFormed: 7-bit, CRLF only, lines within 78 characters, and a header that parses into exactly the
// fields the notice writes.
func checkWellFormed(t *testing.T, notice []byte) {
	t.Helper()
	for i, line := range bytes.Split(notice, []byte("\r\n")) {
		if len(line) > 78 {
			t.Errorf("line %d is %d bytes: %q", i+1, len(line), line)
		}
		for _, c := range line {
			if c >= 0x80 || c == '\r' || c == '\n' || (c < 0x20 && c != '\t') {
				t.Fatalf("line %d has byte %#x: %q", i+1, c, line)
			}
		}
	}
	nm, err := mail.ReadMessage(bytes.NewReader(notice))
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"Date": true, "From": true, "To": true, "Subject": true, "Message-Id": true,
		"In-Reply-To": true, "References": true, "Auto-Submitted": true, "X-Postern-Withheld": true,
		"Mime-Version": true, "Content-Type": true, "Content-Transfer-Encoding": true}
	for k, vs := range nm.Header {
		if !allowed[k] || len(vs) != 1 {
			t.Errorf("unexpected header field %q: %q", k, vs)
		}
	}
}

// TestNoticeHostileInput: CR/LF smuggled in encoded words, in the decision's texts and reference, 8-bit and
// invalid UTF-8 bytes, and huge values cannot add a field, break the message, or make it large.
// TestNoticeKept: a notice whose original is elsewhere than the quarantine says so instead.
func TestNoticeKept(t *testing.T) {
	w := decision
	w.Kept = "The original is still on the mail server."
	_, body := readBoth(t, Notice(parseMsg(t, original), w))
	if strings.Contains(body, "quarantine") || !strings.Contains(body, "The original is still on the mail server.") {
		t.Errorf("body:\n%s", body)
	}
}

func TestNoticeHostileInput(t *testing.T) {
	huge := strings.Repeat("x", 30000) // under the parser's 64 KiB line limit
	raw := "From: =?utf-8?q?Eve=0D=0ABcc:_victim@example.net?= <eve@example.org>\r\n" +
		"To: \xff\xfe <to@example.org>\r\n" +
		"Subject: =?utf-8?q?hi=0D=0ABcc:_x@example.net=0D=0A=0D=0Abody?= \xc3\x28 " + huge + "\r\n" +
		"Message-ID: <a\r\n b@example.org>\r\n" +
		"References: " + strings.Repeat("<r@example.org>\r\n ", 2000) + "<evil\x01@x>\r\n" +
		"Date: not a date\r\n" +
		"\r\n" +
		"body\r\n"
	w := Withheld{Policy: "p\r\nBcc: x@example.net", Action: "quarantine", Reason: "r\nX-Evil: 1\x00" + huge,
		Reference: "ref\r\nBcc: y@example.net", Hostname: "bad host\r\nX: y",
		Date: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)}
	notice := Notice(parseMsg(t, raw), w)
	checkWellFormed(t, notice)
	if len(notice) > 8<<10 {
		t.Errorf("notice is %d bytes, want a few KiB", len(notice))
	}
	nm, body := readBoth(t, notice)
	if nm.Header.Get("Bcc") != "" || nm.Header.Get("X-Evil") != "" || nm.Header.Get("X") != "" {
		t.Errorf("a field was injected: %v", nm.Header)
	}
	if d, err := nm.Header.Date(); err != nil || !d.Equal(w.Date) {
		t.Errorf("Date = %v, %v; want the fallback date", d, err)
	}
	if !strings.HasSuffix(nm.Header.Get("Message-ID"), "@postern.invalid>") {
		t.Errorf("Message-ID = %q with a bad hostname", nm.Header.Get("Message-ID"))
	}
	if refs := strings.Fields(nm.Header.Get("References")); len(refs) != noticeIDsMax {
		t.Errorf("References has %d IDs, want the last %d valid ones", len(refs), noticeIDsMax)
	}
	if !strings.Contains(body, "Policy:     p Bcc: x@example.net") || strings.Contains(body, "\x00") {
		t.Errorf("policy name not cleaned in the body:\n%s", body)
	}
	subject, err := (&gomailHeader{nm.Header}).text("Subject")
	if err != nil || !strings.HasPrefix(subject, "[withheld] hi Bcc: x@example.net body \uFFFD( xxx") || len(subject) > 300 {
		t.Errorf("Subject = %q (%d bytes), %v", subject, len(subject), err)
	}
}

// TestNoticeWithoutHeader: a message with no usable header still gets a complete notice.
func TestNoticeWithoutHeader(t *testing.T) {
	for _, m := range []*message.Message{nil, parseMsg(t, "\r\nbody only\r\n")} {
		notice := Notice(m, Withheld{Action: "discard"})
		checkWellFormed(t, notice)
		nm, body := readBoth(t, notice)
		if d, err := nm.Header.Date(); err != nil || d.Unix() != 0 {
			t.Errorf("Date = %v, %v", d, err)
		}
		if from, err := nm.Header.AddressList("From"); err != nil || from[0].Address != "postmaster@postern.invalid" {
			t.Errorf("From = %v, %v", from, err)
		}
		if nm.Header.Get("Subject") != "[withheld]" {
			t.Errorf("Subject = %q", nm.Header.Get("Subject"))
		}
		if !strings.Contains(body, "Policy:     (a plugin failure)") {
			t.Errorf("body:\n%s", body)
		}
	}
}

// TestNoticeOfANotice: withholding a notice again (a client that re-uploads it, a second policy) does not stack
// prefixes, and its Message-ID differs from the first notice's.
func TestNoticeOfANotice(t *testing.T) {
	first := Notice(parseMsg(t, original), decision)
	second := Notice(parseMsg(t, string(first)), decision)
	nm1, _ := readBoth(t, first)
	nm2, _ := readBoth(t, second)
	subject, err := (&gomailHeader{nm2.Header}).text("Subject")
	if err != nil || subject != "[withheld] Grüße and an invoice" {
		t.Errorf("Subject = %q, %v", subject, err)
	}
	if nm1.Header.Get("Message-ID") == nm2.Header.Get("Message-ID") {
		t.Error("a notice of a notice has the same Message-ID")
	}
}
