package main

import (
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/postern/postern/internal/pluginharness"
	"github.com/postern/postern/proxy/pluginhost"
)

// fullNumbers are the numbers in testdata, as digits/characters only. None may ever appear in a log line, a
// tag or a verdict text, with or without separators.
var fullNumbers = []string{
	"4111111111111111", "5555555555554444", "378282246310005", "6011111111111117",
	"DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606",
}

// checkRedacted fails the test if anything the plugin reported holds a full number.
func checkRedacted(t *testing.T, res *pluginhost.Result) {
	t.Helper()
	var texts []string
	for _, l := range res.Logs {
		texts = append(texts, l.Text)
	}
	for k, v := range res.Tags {
		texts = append(texts, k+"="+v)
	}
	texts = append(texts, res.Verdict.Text)
	strip := strings.NewReplacer(" ", "", "-", "")
	for _, s := range texts {
		flat := strip.Replace(s)
		for _, n := range fullNumbers {
			if strings.Contains(flat, n) {
				t.Errorf("%q reveals %s", s, n)
			}
		}
		// And nothing that looks like a whole card number, whatever it is.
		if m := regexp.MustCompile(`\d{13,19}`).FindString(flat); m != "" && validCard(m) {
			t.Errorf("%q reveals a card number", s)
		}
	}
}

func TestDetection(t *testing.T) {
	p := harness.Load(t, "{}")
	for _, tc := range []struct {
		file         string
		cards, ibans int
		found        string
	}{
		{"clean.eml", 0, 0, ""},
		{"pdf-with-digits.eml", 0, 0, ""},
		{"card-text.eml", 1, 0, "card 4111********1111 (part 0)"},
		// The same card in the quoted-printable Latin-1 text and the base64 HTML alternative counts once.
		{"card-alternative.eml", 1, 0, "card 5555********4444 (part 1)"},
		{"iban-text.eml", 0, 2, "iban DE89**************3000 (part 0), iban GB82**************5432 (part 0)"},
		// A CSV sent as application/octet-stream, in Latin-1 and base64: Amex, Discover, a dashed Visa, an IBAN.
		{"csv-attachment.eml", 3, 1, "card 3782*******0005 (part 2)"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			in := harness.Eml(t, tc.file)
			o := harness.Run(t, p, in)
			checkRedacted(t, o.Res)
			if o.Res.Changes.Len() != 0 || string(o.Out) != string(in) {
				t.Errorf("the plugin changed the message: %v", o.Res.Changes.List())
			}
			if o.Res.Verdict.Kind != pluginhost.Accept {
				t.Errorf("verdict = %+v, want accept (the default action is tag)", o.Res.Verdict)
			}
			if tc.cards+tc.ibans == 0 {
				if len(o.Res.Tags) != 0 || o.Res.Score != 0 {
					t.Errorf("clean message: tags %v, score %v", o.Res.Tags, o.Res.Score)
				}
				return
			}
			if got, want := o.Res.Tags["dlp.cards"], itoa(tc.cards); got != want {
				t.Errorf("dlp.cards = %q, want %q", got, want)
			}
			if got, want := o.Res.Tags["dlp.ibans"], itoa(tc.ibans); got != want {
				t.Errorf("dlp.ibans = %q, want %q", got, want)
			}
			if got := o.Res.Tags["dlp.found"]; !strings.Contains(got, tc.found) {
				t.Errorf("dlp.found = %q, want it to contain %q", got, tc.found)
			}
			if want := float64(tc.cards + tc.ibans); o.Res.Score != want {
				t.Errorf("score = %v, want %v", o.Res.Score, want)
			}
			if !logged(o.Res, "****") {
				t.Errorf("no log line with the redacted numbers: %v", o.Res.Logs)
			}
		})
	}
}

func itoa(n int) string { return string(rune('0' + n)) }

func logged(res *pluginhost.Result, s string) bool {
	for _, l := range res.Logs {
		if strings.Contains(l.Text, s) {
			return true
		}
	}
	return false
}

func TestConfig(t *testing.T) {
	csv := harness.Eml(t, "csv-attachment.eml")
	for _, tc := range []struct {
		name, cfg    string
		kind         pluginhost.Kind
		cards, ibans int // -1: no tags at all
		score        float64
	}{
		{"quarantine", `{"action":"quarantine"}`, pluginhost.Quarantine, 3, 1, 4},
		{"reject", `{"action":"reject"}`, pluginhost.Reject, 3, 1, 4},
		{"min_matches reached", `{"action":"reject","min_matches":4}`, pluginhost.Reject, 3, 1, 4},
		{"min_matches not reached", `{"action":"reject","min_matches":5}`, pluginhost.Accept, -1, -1, 0},
		{"score_per_match", `{"score_per_match":2.5}`, pluginhost.Accept, 3, 1, 10},
		{"score_per_match 0", `{"score_per_match":0}`, pluginhost.Accept, 3, 1, 0},
		{"detect ibans", `{"detect":["ibans"]}`, pluginhost.Accept, 0, 1, 1},
		{"detect cards", `{"detect":["cards"]}`, pluginhost.Accept, 3, 0, 3},
		{"not by extension", `{"extensions":[]}`, pluginhost.Accept, -1, -1, 0},
		{"by content type", `{"extensions":[],"content_types":["application/octet-stream"]}`, pluginhost.Accept, 3, 1, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := harness.Run(t, harness.Load(t, tc.cfg), csv)
			checkRedacted(t, o.Res)
			if o.Res.Verdict.Kind != tc.kind {
				t.Errorf("verdict = %+v, want %v", o.Res.Verdict, tc.kind)
			}
			if tc.cards < 0 {
				if len(o.Res.Tags) != 0 {
					t.Errorf("tags = %v, want none", o.Res.Tags)
				}
			} else if o.Res.Tags["dlp.cards"] != itoa(tc.cards) || o.Res.Tags["dlp.ibans"] != itoa(tc.ibans) {
				t.Errorf("tags = %v, want %d cards and %d IBANs", o.Res.Tags, tc.cards, tc.ibans)
			}
			if o.Res.Score != tc.score {
				t.Errorf("score = %v, want %v", o.Res.Score, tc.score)
			}
		})
	}
	t.Run("reject reply", func(t *testing.T) {
		o := harness.Run(t, harness.Load(t, `{"action":"reject","code":550,"text":"no card numbers by mail, please"}`), csv)
		if want := (pluginhost.Verdict{Kind: pluginhost.Reject, Code: 550, Enhanced: "5.7.1",
			Text: "no card numbers by mail, please"}); o.Res.Verdict != want {
			t.Errorf("verdict = %+v, want %+v", o.Res.Verdict, want)
		}
		o = harness.Run(t, harness.Load(t, `{"action":"reject"}`), csv)
		if o.Res.Verdict.Code != 554 || o.Res.Verdict.Enhanced != "5.7.1" || !strings.Contains(o.Res.Verdict.Text, "card") {
			t.Errorf("default reject = %+v", o.Res.Verdict)
		}
	})
	t.Run("quarantine reason is redacted", func(t *testing.T) {
		o := harness.Run(t, harness.Load(t, `{"action":"quarantine"}`), csv)
		if !strings.Contains(o.Res.Verdict.Text, "6011********1117") {
			t.Errorf("quarantine reason = %q, want the redacted numbers", o.Res.Verdict.Text)
		}
	})
	t.Run("below min_matches logs at debug only", func(t *testing.T) {
		o := harness.Run(t, harness.Load(t, `{"action":"reject","min_matches":5}`), csv)
		checkRedacted(t, o.Res)
		for _, l := range o.Res.Logs {
			if l.Level > slog.LevelDebug {
				t.Errorf("log above debug: %+v", l)
			}
		}
	})
}

func TestBadConfig(t *testing.T) {
	for cfg, want := range map[string]string{
		`{"action":"block"}`:     "unknown value",
		`{"min_matches":0}`:      "at least 1",
		`{"detect":["phone"]}`:   "unknown kind",
		`{"score_per_match":""}`: "score_per_match: want a number, got a string",
	} {
		_, err := harness.LoadErr(t, cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%s) error = %v, want it to mention %q", cfg, err, want)
		}
	}
}

// TestCorpus runs the plugin over the shared corpus of real and malformed mail: no call may fail, nothing may
// change, and whatever it finds must be reported redacted.
func TestCorpus(t *testing.T) {
	p := harness.Load(t, `{"action":"quarantine"}`)
	for _, f := range pluginharness.Corpus(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		o := harness.Run(t, p, data)
		checkRedacted(t, o.Res)
		if o.Res.Changes.Len() != 0 {
			t.Errorf("%s: changes %v", f, o.Res.Changes.List())
		}
		if o.Res.Verdict.Kind != pluginhost.Accept {
			t.Logf("%s: %s", f, o.Res.Tags["dlp.found"])
		}
	}
}

// padded returns a message whose text holds n Luhn-failing card-like numbers and then a real card.
func padded(n int) []byte {
	var b strings.Builder
	b.WriteString("From: a@other.test\r\nTo: alice@example.com\r\nSubject: list\r\nMIME-Version: 1.0\r\n\r\n")
	for range n {
		b.WriteString("Ref 4111 1111 1111 1112\r\n")
	}
	b.WriteString("Card 5555 5555 5555 4444\r\n")
	return []byte(b.String())
}

func TestTruncated(t *testing.T) {
	// Below the host's limit, the card after the padding is found.
	o := harness.Run(t, harness.Load(t, `{"action":"reject"}`), padded(900))
	if o.Res.Verdict.Kind != pluginhost.Reject || o.Res.Tags["dlp.cards"] != "1" || o.Res.Tags["dlp.truncated"] != "" {
		t.Errorf("900 near misses: verdict %+v, tags %v", o.Res.Verdict, o.Res.Tags)
	}
	// Past it, the rest of the part is not examined; by default that counts as reaching min_matches.
	o = harness.Run(t, harness.Load(t, `{"action":"reject"}`), padded(1200))
	checkRedacted(t, o.Res)
	if o.Res.Verdict.Kind != pluginhost.Reject || o.Res.Tags["dlp.truncated"] != "part 0" {
		t.Errorf("1200 near misses: verdict %+v, tags %v", o.Res.Verdict, o.Res.Tags)
	}
	if !logged(o.Res, "not examined completely") {
		t.Errorf("no warning: %v", o.Res.Logs)
	}
	o = harness.Run(t, harness.Load(t, `{"action":"reject","act_on_truncated":false}`), padded(1200))
	if o.Res.Verdict.Kind != pluginhost.Accept || o.Res.Tags["dlp.truncated"] != "part 0" || o.Res.Tags["dlp.cards"] != "" {
		t.Errorf("act_on_truncated false: verdict %+v, tags %v", o.Res.Verdict, o.Res.Tags)
	}
}

// manyParts returns a message with n text parts of 999 card-like numbers failing Luhn each.
func manyParts(n int) []byte {
	var b strings.Builder
	b.WriteString("From: a@other.test\r\nTo: alice@example.com\r\nSubject: many\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n")
	body := strings.Repeat("4111 1111 1111 1112\r\n", 999)
	for range n {
		b.WriteString("--m\r\nContent-Type: text/plain\r\n\r\n" + body)
	}
	b.WriteString("--m\r\nContent-Type: text/plain\r\n\r\nCard 5555 5555 5555 4444\r\n--m--\r\n")
	return []byte(b.String())
}

func TestMessageBudget(t *testing.T) {
	p := harness.Load(t, `{"action":"reject"}`)
	// Nine parts of 999 candidates stay within the message's budget: the card in the last part is found.
	o := harness.Run(t, p, manyParts(9))
	if o.Res.Tags["dlp.cards"] != "1" || o.Res.Tags["dlp.truncated"] != "" {
		t.Errorf("9 parts: tags %v", o.Res.Tags)
	}
	// Eleven spend it: the last part is not examined, and that counts as truncated.
	o = harness.Run(t, p, manyParts(11))
	if o.Res.Verdict.Kind != pluginhost.Reject || o.Res.Tags["dlp.truncated"] != "part 12 and later" {
		t.Errorf("11 parts: verdict %+v, tags %v", o.Res.Verdict, o.Res.Tags)
	}
}
