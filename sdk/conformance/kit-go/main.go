// Command kit-go is the conformance kit plugin for the Go SDK: it calls every host function through
// github.com/postern/postern/sdk/postern on the fixed input of sdk/conformance and reports each observation as a
// tag, as sdk/conformance/README.md specifies. The check names and the order of the changes are the protocol;
// keep them in step with the README, expected.json and the other kits.
package main

import (
	"encoding/hex"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/postern/postern/sdk/postern"
)

// The fixed pattern set of the kit protocol.
var patternList = []string{"swordfish", "(?i)swordfish", "K[öo]ln"}

// State observed in postern_init, which cannot tag: reported by every hook. It is configuration, not message
// data.
var (
	initConfig, initPatterns, initPatternInvalid string
	pats                                         *postern.Patterns
)

type config struct {
	Greeting string `json:"greeting"`
	Limits   struct {
		MaxMatches int `json:"max_matches"`
	} `json:"limits"`
	Words []string `json:"words"`
}

func init() {
	postern.OnInit(func() error {
		var cfg config
		initConfig = result("ok", postern.Config(&cfg))
		var err error
		pats, err = postern.Compile(patternList...)
		initPatterns = result("ok", err)
		_, err = postern.Compile("a(b")
		initPatternInvalid = result("ok", err)
		return nil
	})
	postern.OnConnect(func(e *postern.Envelope) error {
		envelopeChecks(e)
		report(e, "change.rcpt_add", status(e.AddRecipient("dave@example.net")))
		return nil
	})
	postern.OnMailFrom(func(e *postern.Envelope) error {
		envelopeChecks(e)
		report(e, "change.rcpt_add", status(e.AddRecipient("dave@example.net")))
		report(e, "verdict.tempfail", status(e.Tempfail(0, "", "greylisted")))
		return nil
	})
	postern.OnRcptTo(func(e *postern.Envelope) error {
		envelopeChecks(e)
		report(e, "change.rcpt_add", status(e.AddRecipient("erin@example.net")))
		report(e, "verdict.reject", status(e.Reject(0, "5.1.1", "no such user")))
		report(e, "score.add", status(e.Score(0.5)))
		return nil
	})
	postern.OnMessage(messageChecks)
}

func main() {}

// report adds one check. A refused tag shows up as a missing check in the test, so its error is not needed here.
func report(e *postern.Envelope, check, value string) { _ = e.Tag(check, value) }

// code formats an error as the protocol wants: the ABI code in decimal.
func code(err error) string {
	var errno postern.Errno
	if errors.As(err, &errno) {
		return strconv.Itoa(int(errno))
	}
	return "error: " + err.Error()
}

func result(ok string, err error) string {
	if err != nil {
		return code(err)
	}
	return ok
}

func status(err error) string { return result("0", err) }

func value(v string, err error) string { return result(v, err) }

func total(n int, err error) string { return result(strconv.Itoa(n), err) }

func list(vals []string, err error) string { return result(strings.Join(vals, ","), err) }

// commonChecks are reported by every hook.
func commonChecks(e *postern.Envelope) {
	report(e, "init.config", initConfig)
	report(e, "init.patterns", initPatterns)
	report(e, "init.pattern_invalid", initPatternInvalid)

	var cfg config
	report(e, "config.greeting", value(cfg.Greeting, postern.Config(&cfg)))
	raw, err := postern.ConfigJSON()
	report(e, "config.len", total(len(raw), err))

	for _, f := range []string{"hook", "protocol", "direction", "listener", "client.ip", "client.port",
		"client.helo", "tls.version", "tls.cipher", "upstream.tls.version", "upstream.tls.cipher", "auth.user", "mail_from", "smtputf8", "rcpt.current",
		"message.size", "mailbox.user", "mailbox.name", "message.uid", "message.uidvalidity", "message.uidl",
		"message.internal_date", "command", "message.limit_exceeded"} {
		report(e, "field."+f, value(postern.Field(f)))
	}
	rcpts, err := postern.Fields("rcpt")
	report(e, "field.rcpt", list(rcpts, err))
	report(e, "field.rcpt.count", total(len(rcpts), err))
	report(e, "field.message.malformed", list(postern.Fields("message.malformed")))
	report(e, "field.message.ambiguous", list(postern.Fields("message.ambiguous")))
	report(e, "field.message.flags", list(postern.Fields("message.flags")))
	report(e, "field.unknown", value(postern.Field("no.such.field")))
	// Field reads index 0 only; index 1 of a single-valued field is the second value of Fields.
	proto, err := postern.Fields("protocol")
	if err == nil && len(proto) == 1 {
		report(e, "field.past_end", code(postern.ErrNotFound))
	} else {
		report(e, "field.past_end", "values: "+list(proto, err))
	}
}

// envelopeChecks are the checks of connect, mail_from and rcpt_to: the message functions are unavailable there.
// The kit calls them through a Message value of its own, which a real plugin never has outside OnMessage.
func envelopeChecks(e *postern.Envelope) {
	commonChecks(e)
	var m postern.Message
	buf := make([]byte, 16)
	report(e, "unavail.header_get", value(m.PartHeader(0, "Subject", 0, false)))
	_, err := m.HeaderBlock(0)
	report(e, "unavail.header_all", status(err))
	_, err = m.Parts()
	report(e, "unavail.part_count", status(err))
	report(e, "unavail.part_field", value(m.PartField(0, "size")))
	report(e, "unavail.part_read", total(m.ReadPart(0, postern.ModeRaw, 0, buf)))
	report(e, "unavail.message_read", total(m.ReadMessage(0, buf)))
	_, err = m.Match(0, postern.ModeRaw, pats, 0)
	report(e, "unavail.part_match", status(err))
	_, err = m.SHA256(0, postern.ModeRaw)
	report(e, "unavail.part_sha256", status(err))
	report(e, "unavail.header_add", status(m.AddHeader("X-Kit", "1")))
	report(e, "unavail.header_set", status(m.SetHeader("X-Kit", "1")))
	report(e, "unavail.header_remove", status(m.RemoveHeader("X-Kit")))
	report(e, "unavail.subject_prefix", status(m.PrefixSubject("[x] ")))
	report(e, "unavail.banner_add", status(m.AddBanner("x", "")))
	report(e, "unavail.part_remove", status(m.RemovePart(1)))
	report(e, "unavail.part_replace", status(m.ReplacePart(2, "text/plain", []byte("x"))))
}

func hexOf(b []byte, err error) string { return value(hex.EncodeToString(b), err) }

// content reads a whole part in mode with ReadPart: length first, then one read.
func content(m *postern.Message, part int, mode postern.Mode) ([]byte, error) {
	n, err := m.ReadPart(part, mode, 0, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	_, err = m.ReadPart(part, mode, 0, buf)
	return buf, err
}

// window reads len(buf) bytes at off and returns what was written and the total.
func window(read func(off int, buf []byte) (int, error), off, n int) (string, int, error) {
	buf := make([]byte, n)
	t, err := read(off, buf)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(buf[:max(0, min(n, t-off))]), t, nil
}

func formatMatches(ms []postern.Match) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = strconv.Itoa(m.Pattern) + ":" + strconv.Itoa(m.Start) + "-" + strconv.Itoa(m.End)
	}
	return strings.Join(s, " ")
}

func messageChecks(m *postern.Message) error {
	e := &m.Envelope
	commonChecks(e)
	readChecks(m)
	decideChecks(m)
	changeChecks(m)
	return nil
}

func readChecks(m *postern.Message) {
	e := &m.Envelope
	report(e, "header.subject", m.Header("Subject"))
	report(e, "header.subject.decoded", m.HeaderDecoded("Subject"))
	report(e, "header.subject.case", value(m.PartHeader(0, "sUBJECT", 0, true)))
	report(e, "header.from.decoded", m.HeaderDecoded("From"))
	for i := range 3 {
		report(e, "header.x-multi."+strconv.Itoa(i), value(m.PartHeader(0, "X-Multi", i, false)))
	}
	report(e, "header.x-multi.count", strconv.Itoa(len(m.Headers("X-Multi"))))
	report(e, "header.x-folded", m.Header("X-Folded"))
	eight, err := m.PartHeader(0, "X-Eight-Bit", 0, false)
	report(e, "header.x-eight-bit.hex", hexOf([]byte(eight), err))
	report(e, "header.missing", value(m.PartHeader(0, "X-Nope", 0, false)))
	report(e, "header.bad_name", value(m.PartHeader(0, "X:Bad", 0, false)))
	report(e, "header.bad_part", value(m.PartHeader(99, "Subject", 0, false)))
	report(e, "header.2.content-type", value(m.PartHeader(2, "Content-Type", 0, false)))
	block, err := m.HeaderBlock(0)
	report(e, "header_all.0.len", total(len(block), err))
	report(e, "header_all.2.hex", hexOf(m.HeaderBlock(2)))
	_, err = m.HeaderBlock(99)
	report(e, "header_all.bad_part", status(err))

	parts, err := m.Parts()
	report(e, "part.count", total(len(parts), err))
	for _, p := range parts {
		k := "part." + strconv.Itoa(p.ID) + "."
		multipart := "0"
		if p.Multipart {
			multipart = "1"
		}
		for _, kv := range [][2]string{{"parent", strconv.Itoa(p.Parent)}, {"depth", strconv.Itoa(p.Depth)},
			{"content_type", p.ContentType}, {"charset", p.Charset}, {"encoding", p.Encoding},
			{"disposition", p.Disposition}, {"filename", p.Filename}, {"size", strconv.Itoa(p.Size)},
			{"multipart", multipart}, {"defects", strings.Join(p.Defects, "\n")}} {
			report(e, k+kv[0], kv[1])
		}
	}
	report(e, "part_field.unknown", value(m.PartField(0, "no_such_attr")))
	report(e, "part_field.bad_part", value(m.PartField(99, "size")))
	report(e, "part_field.negative", value(m.PartField(-1, "size")))

	report(e, "part_read.2.raw.len", total(m.ReadPart(2, postern.ModeRaw, 0, nil)))
	report(e, "part_read.2.decoded.len", total(m.ReadPart(2, postern.ModeDecoded, 0, nil)))
	report(e, "part_read.2.text.len", total(m.ReadPart(2, postern.ModeText, 0, nil)))
	report(e, "part_read.2.decoded.hex", hexOf(content(m, 2, postern.ModeDecoded)))
	text, err := m.Text(2)
	report(e, "part_read.2.text.hex", hexOf([]byte(text), err))
	readText2 := func(off int, buf []byte) (int, error) { return m.ReadPart(2, postern.ModeText, off, buf) }
	w, t, err := window(readText2, 6, 5)
	report(e, "part_read.2.text.window", value(w, err))
	report(e, "part_read.2.text.window.total", total(t, err))
	_, t, err = window(readText2, 1000, 16)
	report(e, "part_read.2.text.past_end", total(t, err))
	report(e, "part_read.4.raw.len", total(m.ReadPart(4, postern.ModeRaw, 0, nil)))
	report(e, "part_read.4.decoded.len", total(m.ReadPart(4, postern.ModeDecoded, 0, nil)))
	w, _, err = window(func(off int, buf []byte) (int, error) {
		return m.ReadPart(4, postern.ModeDecoded, off, buf)
	}, 0, 8)
	report(e, "part_read.4.decoded.head", value(w, err))
	report(e, "part_read.0.raw.len", total(m.ReadPart(0, postern.ModeRaw, 0, nil)))
	w, _, err = window(func(off int, buf []byte) (int, error) { return m.ReadPart(0, postern.ModeRaw, off, buf) }, 0, 16)
	report(e, "part_read.0.raw.head", value(w, err))
	buf := make([]byte, 16)
	report(e, "part_read.1.decoded", total(m.ReadPart(1, postern.ModeDecoded, 0, buf)))
	report(e, "part_read.bad_mode", total(m.ReadPart(2, postern.Mode(7), 0, buf)))
	report(e, "part_read.bad_part", total(m.ReadPart(99, postern.ModeRaw, 0, buf)))
	report(e, "part_read.5.text", total(m.ReadPart(5, postern.ModeText, 0, buf)))
	report(e, "part_read.5.decoded.hex", hexOf(content(m, 5, postern.ModeDecoded)))

	// The stream goes through a 16-byte window, whatever the part's size.
	var streamed []byte
	r := m.Reader(3, postern.ModeText)
	for {
		n, err := r.Read(buf)
		streamed = append(streamed, buf[:n]...)
		if err == io.EOF {
			report(e, "stream.3.text", hex.EncodeToString(streamed))
			break
		}
		if err != nil {
			report(e, "stream.3.text", code(err))
			break
		}
	}
	report(e, "text.3", value(m.Text(3)))

	report(e, "message_read.len", total(m.ReadMessage(0, nil)))
	w, _, err = window(m.ReadMessage, 0, 16)
	report(e, "message_read.head", value(w, err))
	w, _, err = window(m.ReadMessage, 100, 16)
	report(e, "message_read.window", value(w, err))
	_, t, err = window(m.ReadMessage, 1000000, 16)
	report(e, "message_read.past_end", total(t, err))

	ms, err := m.Match(2, postern.ModeText, pats, 0)
	report(e, "match.2.text", value(formatMatches(ms), err))
	report(e, "match.2.text.count", total(len(ms), err))
	if len(ms) > 0 {
		report(e, "match.2.text.first", value(ms[0].Text()))
	}
	report(e, "match.2.text.max2", value(formatMatches2(m.Match(2, postern.ModeText, pats, 2))))
	report(e, "match.3.text", value(formatMatches2(m.Match(3, postern.ModeText, pats, 0))))
	ms, err = m.Match(0, postern.ModeRaw, pats, 0)
	report(e, "match.0.raw.count", total(len(ms), err))
	_, err = m.Match(1, postern.ModeDecoded, pats, 0)
	report(e, "match.1.decoded", status(err))
	// The Go SDK cannot name an arbitrary handle: a Patterns that was never compiled is its bad handle, refused
	// before reaching the host. The C kit sends 9999 to the host.
	_, err = m.Match(2, postern.ModeText, new(postern.Patterns), 0)
	report(e, "match.bad_handle", status(err))
	_, err = m.Match(5, postern.ModeText, pats, 0)
	report(e, "match.5.text", status(err))

	for _, c := range []struct {
		check string
		part  int
		mode  postern.Mode
	}{{"sha256.4.decoded", 4, postern.ModeDecoded}, {"sha256.2.text", 2, postern.ModeText},
		{"sha256.0.raw", 0, postern.ModeRaw}, {"sha256.1.decoded", 1, postern.ModeDecoded},
		{"sha256.5.text", 5, postern.ModeText}} {
		sum, err := m.SHA256(c.part, c.mode)
		report(e, c.check, hexOf(sum[:], err))
	}
}

func formatMatches2(ms []postern.Match, err error) (string, error) { return formatMatches(ms), err }

func decideChecks(m *postern.Message) {
	e := &m.Envelope
	report(e, "verdict.reject.bad_code", status(m.Reject(250, "", "x")))
	report(e, "verdict.reject.bad_enh", status(m.Reject(550, "4.7.1", "x")))
	report(e, "verdict.tempfail.crlf", status(m.Tempfail(0, "", "bad\r\ntext")))
	report(e, "verdict.text.long", status(m.Reject(0, "", strings.Repeat("x", 513))))
	report(e, "verdict.reject", status(m.Reject(554, "5.7.0", "rejected by kit")))
	report(e, "verdict.discard", status(m.Discard()))
	report(e, "verdict.accept", status(m.Accept()))
	report(e, "verdict.quarantine", status(m.Quarantine("conformance kit")))

	report(e, "tag.bad_key", status(m.Tag("bad key!", "v")))
	report(e, "tag.long_key", status(m.Tag(strings.Repeat("k", 65), "v")))
	report(e, "tag.long_value", status(m.Tag("long.value", strings.Repeat("x", 1025))))
	report(e, "tag.replaced", "first")
	report(e, "tag.replaced", "second")

	_ = m.Score(1.5)
	report(e, "score.add", status(m.Score(-0.25)))
	report(e, "score.nan", status(m.Score(math.NaN())))
	report(e, "score.inf", status(m.Score(math.Inf(1))))

	postern.Log(postern.LevelDebug, "kit debug")
	postern.Log(postern.LevelInfo, "kit info")
	postern.Log(postern.LevelWarn, "kit warn")
	postern.Log(postern.LevelError, "kit error")
	postern.Log(postern.Level(9), "kit clamped")
}

func changeChecks(m *postern.Message) {
	e := &m.Envelope
	report(e, "change.header_add", status(m.AddHeader("X-Conformance", "kit")))
	report(e, "change.header_set", status(m.SetHeader("X-Multi", "replaced")))
	report(e, "change.header_remove", status(m.RemoveHeader("X-Folded")))
	report(e, "change.subject_prefix", status(m.PrefixSubject("[kit] ")))
	report(e, "change.banner_add", status(m.AddBanner("Scanned by Postern.", "<p>Scanned by Postern.</p>")))
	report(e, "change.part_replace", status(m.ReplacePart(4, "text/plain", []byte("replaced by the conformance kit"))))
	report(e, "change.part_remove", status(m.RemovePart(5)))
	report(e, "change.rcpt_add", status(m.AddRecipient("carol@example.net")))

	report(e, "change.header_add.crlf", status(m.AddHeader("X-Evil", "a\r\nBcc: x@example.net")))
	report(e, "change.header_add.bad_name", status(m.AddHeader("X:Bad", "v")))
	report(e, "change.header_set.nul", status(m.SetHeader("X-Nul", "a\x00b")))
	report(e, "change.part_remove.root", status(m.RemovePart(0)))
	report(e, "change.part_remove.bad_part", status(m.RemovePart(99)))
	report(e, "change.part_replace.multipart", status(m.ReplacePart(1, "text/plain", []byte("x"))))
	report(e, "change.rcpt_add.bad", status(m.AddRecipient("<bad@example.net>")))
}
