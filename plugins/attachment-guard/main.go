// Command attachment-guard is a Postern plugin that blocks or strips attachments that can run code: by file
// extension (double extensions and encoded names included), by declared media type, by the content's own
// signature (a Windows executable named notes.txt is still an executable), and by what is inside archives
// (ZIP, 7z, RAR, tar and the compressed formats, nested), which are recognised by their content.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o attachment-guard.wasm . (see README.md).
package main

import (
	"errors"
	"fmt"
	"html"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/postern/postern/sdk/postern"
)

// Set once per instance by setup; never holds message data.
var cfg settings

func init() {
	postern.OnInit(setup)
	postern.OnMessage(guard)
}

func main() {}

// setup runs once per instance: it reads and checks the configuration.
func setup() error {
	raw, err := postern.ConfigJSON()
	if err != nil {
		return fmt.Errorf("reading the configuration: %w", err)
	}
	cfg, err = parseConfig(raw)
	if err != nil {
		return err
	}
	// A message of inline, unnamed text bodies and nothing else has no file for mail clients to offer, so unless
	// the configuration blocks a text type or asks for text bodies to be sniffed, nothing in it can be refused:
	// the host need not call the plugin for it.
	if !cfg.textBodies && checkContentType("text/plain", cfg.contentTypes) == nil && checkContentType("text/html", cfg.contentTypes) == nil {
		postern.Wants(postern.WantFiles)
	}
	return nil
}

// maxStrip is the most parts the strip action removes; past it the message is rejected (see guard).
const maxStrip = 500

// blocked is a part the rules refuse, with every reason found. whole marks the entry for a message that could
// not be inspected completely (part is then part 0).
type blocked struct {
	part    postern.Part
	reasons []reason
	whole   bool
}

// label names the part for people: its file name, or "part N (type)" when it has none.
func (b blocked) label() string {
	if b.whole {
		return "the message"
	}
	if n := blockedName(b.part); n != "" && n != b.part.Filename {
		// Clients disagree on the name, and the one blocked is not the first: show both.
		return printable(b.part.Filename+" / "+n, 200)
	}
	if b.part.Filename != "" {
		return printable(b.part.Filename, 200)
	}
	return fmt.Sprintf("part %d (%s)", b.part.ID, b.part.ContentType)
}

// guard is the message hook: it inspects every leaf part, then applies the configured action to what it found.
func guard(m *postern.Message) error {
	detailLines = 0
	parts, err := m.Parts()
	if err != nil {
		return fmt.Errorf("listing parts: %w", err)
	}
	var found []blocked
	for _, p := range parts {
		if p.Multipart {
			continue
		}
		rs, err := inspect(m, p)
		if err != nil {
			return fmt.Errorf("inspecting part %d: %w", p.ID, err)
		}
		if len(rs) > 0 {
			found = append(found, blocked{part: p, reasons: rs})
		}
	}
	if kind := limitExceeded(); kind != "" && cfg.incomplete {
		// Parts past the limit were never indexed, so never inspected: an attacker pads the message (a
		// 70,000-byte line, 33 nested multiparts) and puts the executable after the padding.
		found = append(found, blocked{parts[0], []reason{{"incomplete:" + kind,
			"too large or too complex to inspect completely (" + kind + ")"}}, true})
	}
	if len(found) == 0 {
		return nil
	}

	act := cfg.action
	if act == actionStrip && len(found) > maxStrip {
		// Each removal is a recorded change and the host allows 1,000 per call; a message with hundreds of
		// executables is not worth delivering in pieces.
		postern.Logf(postern.LevelWarn, "%d parts to strip, more than %d; rejecting", len(found), maxStrip)
		act = actionReject
	}
	if act == actionStrip {
		for _, b := range found {
			if b.part.ID == 0 {
				// The message is nothing but the attachment (or it could not be inspected completely): there is
				// nothing that can be removed to make it safe.
				postern.Log(postern.LevelWarn, "the message itself is blocked and cannot be stripped; rejecting")
				act = actionReject
			}
			if b.part.Derived != "" {
				// Found by reading a part the way some clients do (a uuencoded block inside a text part, the
				// message inside an encoded message/rfc822): the host cannot cut it out alone.
				postern.Logf(postern.LevelWarn, "part %d is a %s reading and cannot be stripped; rejecting", b.part.ID, b.part.Derived)
				act = actionReject
			}
		}
	}
	var files, codes []string
	seen := map[string]bool{}
	for _, b := range found {
		files = append(files, b.label())
		for _, r := range b.reasons {
			if !seen[r.Code] {
				seen[r.Code] = true
				codes = append(codes, r.Code)
			}
		}
	}
	summary := describeAll(found)
	postern.Logf(postern.LevelWarn, "blocked %s; action %s", summary, act)
	for _, t := range [][2]string{
		{"attachment-guard.files", printable(strings.Join(files, ", "), 1024)},
		{"attachment-guard.reasons", printable(strings.Join(codes, ","), 1024)},
		{"attachment-guard.action", string(act)},
	} {
		if err := m.Tag(t[0], t[1]); err != nil {
			return fmt.Errorf("tag %s: %w", t[0], err)
		}
	}
	if cfg.score != 0 {
		if err := m.Score(cfg.score); err != nil {
			return fmt.Errorf("scoring: %w", err)
		}
	}
	switch act {
	case actionReject:
		return verdict(func(text string) error { return m.Reject(cfg.code, "5.7.1", text) }, summary)
	case actionQuarantine:
		return verdict(m.Quarantine, summary)
	case actionStrip:
		return strip(m, found, files)
	}
	return nil
}

// maxDetailLines bounds the per-part log lines of one call: the host fails a call that logs more than 64 KiB,
// and a message may have a thousand parts.
const maxDetailLines = 20

// detailLines counts the per-part lines logged in the current call (guard resets it).
var detailLines int

// logDetail logs a per-part line, up to maxDetailLines per call.
func logDetail(level postern.Level, format string, args ...any) {
	detailLines++
	switch {
	case detailLines < maxDetailLines:
		postern.Logf(level, format, args...)
	case detailLines == maxDetailLines:
		postern.Log(level, "more per-part details not logged")
	}
}

// limitExceeded returns the kind of the host limit that stopped indexing the message ("line-limit",
// "depth-limit", ...), or "" when the message was indexed completely.
func limitExceeded() string {
	defects, err := postern.Fields("message.malformed")
	if err != nil {
		return ""
	}
	for _, d := range defects {
		if kind, _, _ := strings.Cut(d, ":"); strings.HasSuffix(kind, "-limit") {
			return kind
		}
	}
	return ""
}

// verdict sets a verdict whose text names the attachments. Should the host refuse that text (it is built from
// sender-chosen names), a fixed text is used: the decision must not fail because of how a file is named.
func verdict(set func(text string) error, summary string) error {
	err := set(printable("refused: "+summary, 512))
	if errors.Is(err, postern.ErrInvalid) {
		err = set("refused: the message has an attachment that can run code")
	}
	if err != nil {
		return fmt.Errorf("setting the verdict: %w", err)
	}
	return nil
}

// strip removes the blocked parts, records them in a header and tells the reader with a note appended to the
// message text.
func strip(m *postern.Message, found []blocked, files []string) error {
	for _, b := range found {
		if err := m.RemovePart(b.part.ID); err != nil {
			return fmt.Errorf("removing part %d: %w", b.part.ID, err)
		}
	}
	list := strings.Join(files, ", ")
	if cfg.stripHeader != "" {
		if err := m.SetHeader(cfg.stripHeader, printable(list, 900)); err != nil {
			return fmt.Errorf("setting %s: %w", cfg.stripHeader, err)
		}
	}
	if cfg.stripNote == "" {
		return nil
	}
	names := printable(list, maxNoteFiles)
	count := strconv.Itoa(len(found))
	text := "\r\n" + strings.NewReplacer("{count}", count, "{files}", names).Replace(cfg.stripNote) + "\r\n"
	// HTML-escaping can make the names longer than maxNoteFiles; cut them again after escaping.
	escaped := printable(html.EscapeString(names), maxNoteFiles)
	htm := "<p>" + strings.NewReplacer("{count}", count, "{files}", escaped).Replace(html.EscapeString(cfg.stripNote)) + "</p>"
	// The host puts the note into the first text and HTML body parts that remain. The parts are removed and the
	// header says so: a note the host will not take (a body part it cannot decode to extend, or refuses) is not
	// worth failing, and so undoing, the removal.
	err := m.AddBannerEach(text, htm)
	switch {
	case errors.Is(err, postern.ErrDecode):
		postern.Logf(postern.LevelInfo, "a body part cannot be decoded; the strip note is not added to it")
	case errors.Is(err, postern.ErrInvalid):
		postern.Logf(postern.LevelWarn, "the host refused the strip note: %v", err)
	case err != nil:
		return fmt.Errorf("adding the note: %w", err)
	}
	return nil
}

// blockedName returns the first of a part's candidate names that the name rule blocks, or "".
func blockedName(p postern.Part) string {
	for _, n := range p.Filenames {
		if len(checkName(n, cfg.extensions)) > 0 {
			return n
		}
	}
	return ""
}

// checkNames applies the name rule to every name a mail client may give the part's file (the host lists them
// all when clients disagree: two filename parameters, name against filename, RFC 2231 readings), each reason
// once.
func checkNames(p postern.Part) []reason {
	names := p.Filenames
	if len(names) == 0 && p.Filename != "" {
		names = []string{p.Filename}
	}
	var rs []reason
	for _, n := range names {
		for _, r := range checkName(n, cfg.extensions) {
			if !slices.ContainsFunc(rs, func(o reason) bool { return o.Code == r.Code }) {
				rs = append(rs, r)
			}
		}
	}
	return rs
}

// inspect applies every rule to one leaf part.
func inspect(m *postern.Message, p postern.Part) ([]reason, error) {
	rs := checkNames(p)
	rs = append(rs, checkContentType(p.ContentType, cfg.contentTypes)...)
	if len(cfg.sniff) == 0 && !cfg.archives {
		return rs, nil
	}
	readAt := func(off int64, n int) ([]byte, error) {
		buf := make([]byte, n)
		total, err := m.ReadPart(p.ID, postern.ModeDecoded, int(off), buf)
		if err != nil {
			return nil, err
		}
		if off >= int64(total) {
			return nil, nil
		}
		return buf[:min(int64(n), int64(total)-off)], nil
	}
	head := make([]byte, headSize)
	total, err := m.ReadPart(p.ID, postern.ModeDecoded, 0, head)
	if errors.Is(err, postern.ErrDecode) {
		// Undecodable content (an unknown transfer encoding) cannot be sniffed; the name and type rules
		// above still apply, and the defect is the message parser's to report.
		logDetail(postern.LevelDebug, "part %d: content cannot be decoded; not sniffed", p.ID)
		return rs, nil
	}
	if err != nil {
		return nil, err
	}
	head = head[:min(total, headSize)]
	isFile := p.Filename != "" || p.Disposition == "attachment"
	kind := sniff(head, readAt, int64(total), isFile)
	if kind != "" && cfg.sniff[kind] {
		rs = append(rs, reason{"magic:" + kind, kindText[kind]})
	}
	if cfg.archives {
		ars, notes := inspectArchive(&cfg, head, kind, readAt, int64(total))
		for _, n := range notes {
			logDetail(postern.LevelInfo, "part %d: %s", p.ID, n)
		}
		rs = append(rs, ars...)
	}
	return rs, nil
}

var kindText = map[string]string{
	kindPE:        "Windows executable content",
	kindELF:       "Linux executable content",
	kindMachO:     "macOS executable content",
	kindJavaClass: "Java class content",
	kindLNK:       "Windows shortcut content",
	kindScript:    "script content",
	kindISO:       "disk image content",
}

// describeAll is the human summary of every blocked part: `"invoice.pdf.exe" (file type .exe; .exe disguised
// as .pdf)`, joined with "; ".
func describeAll(found []blocked) string {
	var sb strings.Builder
	for i, b := range found {
		if i > 0 {
			sb.WriteString("; ")
		}
		sb.WriteString(strconv.Quote(b.label()))
		sb.WriteString(" (")
		for j, r := range b.reasons {
			if j > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(r.Text)
		}
		sb.WriteString(")")
	}
	return sb.String()
}

// printable makes a sender-controlled string safe for reply texts, tags and headers: anything that is not a
// graphic character (controls, and format characters such as the text-direction overrides used to disguise
// names) becomes '?', and it is cut to at most n bytes at a character boundary.
func printable(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || (r != unicode.ReplacementChar && unicode.IsGraphic(r)) {
			return r
		}
		return '?'
	}, strings.ToValidUTF8(s, "?"))
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n]
}
