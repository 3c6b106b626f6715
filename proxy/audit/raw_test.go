package audit

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Two senders that differ only in invalid bytes must not look alike in the log.
func TestInvalidUTF8RecordedLosslessly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Options{Path: path})
	senders := []string{"a\xff@example.org", "a\xfe@example.org"}
	for i, from := range senders {
		r := sampleRecord(i)
		r.MailFrom = &from
		r.Rcpts = []string{"ok@example.com", "b\x80\x81@example.com"}
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	valid := sampleRecord(9)
	if err := l.Append(valid); err != nil {
		t.Fatal(err)
	}
	l.Close()
	mustIntact(t, path, 3)

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, maxLine)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	// The readable fields alone cannot tell the two senders apart: that is what Raw is for.
	if *recs[0].MailFrom != *recs[1].MailFrom {
		t.Fatalf("mail_from %q and %q: the encoder no longer replaces invalid bytes; revisit Raw", *recs[0].MailFrom, *recs[1].MailFrom)
	}
	for i, from := range senders {
		got, err := base64.StdEncoding.DecodeString(recs[i].Raw["mail_from"])
		if err != nil || string(got) != from {
			t.Fatalf("record %d: raw mail_from %q (%v), want %q", i, got, err, from)
		}
		if _, ok := recs[i].Raw["rcpts[0]"]; ok {
			t.Fatalf("record %d: raw form of a valid recipient: %v", i, recs[i].Raw)
		}
		got, _ = base64.StdEncoding.DecodeString(recs[i].Raw["rcpts[1]"])
		if string(got) != "b\x80\x81@example.com" {
			t.Fatalf("record %d: raw rcpts[1] %q", i, got)
		}
	}
	if recs[2].Raw != nil {
		t.Fatalf("a record with valid UTF-8 has raw fields: %v", recs[2].Raw)
	}
}
