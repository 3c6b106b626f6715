package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVerifyIntact(t *testing.T) {
	path := writeChain(t, t.TempDir(), 20, Options{})
	s := mustIntact(t, path, 20)
	if s.Files != 1 || s.FirstSeq != 1 || s.LastSeq != 20 || s.FirstPrev != genesis {
		t.Fatalf("summary %+v", s)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	last, n, err := Verify(f, "")
	if err != nil || n != 20 || last != s.LastHash {
		t.Fatalf("Verify = %s, %d, %v; VerifyFiles said %s", last, n, err, s.LastHash)
	}
}

// TestHashFormula checks the documented formula literally, as an outside tool would apply it: every record's
// hash is the SHA-256 of its line without the last 75 bytes (the hash member and the closing brace), plus "}",
// and every prev is the hash of the line before.
func TestHashFormula(t *testing.T) {
	path := writeChain(t, t.TempDir(), 5, Options{})
	prev := strings.Repeat("0", 64)
	for i, line := range readLines(t, path) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		var rec struct {
			V    int    `json:"v"`
			Seq  uint64 `json:"seq"`
			Prev string `json:"prev"`
			Hash string `json:"hash"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(append(bytes.Clone(line[:len(line)-75]), '}'))
		if hex.EncodeToString(sum[:]) != rec.Hash || rec.Prev != prev || rec.Seq != uint64(i+1) || rec.V != 1 {
			t.Fatalf("line %d: %+v, computed hash %x, expected prev %s", i+1, rec, sum, prev)
		}
		if !bytes.HasPrefix(line, []byte(`{"v":1,"seq":`)) {
			t.Fatalf("line %d does not start with v and seq: %.30s", i+1, line)
		}
		prev = rec.Hash
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	const n = 10
	for _, tc := range []struct {
		name    string
		tamper  func(lines [][]byte) [][]byte
		problem Problem
		line    int
		seq     uint64
	}{
		{"edited", func(l [][]byte) [][]byte {
			l[3] = bytes.Replace(l[3], []byte(`"action":"accept"`), []byte(`"action":"reject"`), 1)
			return l
		}, ProblemEdited, 4, 4},
		{"edited whitespace", func(l [][]byte) [][]byte {
			l[3] = bytes.Replace(l[3], []byte(`,"listener"`), []byte(`, "listener"`), 1)
			return l
		}, ProblemEdited, 4, 4},
		{"edited and rehashed", func(l [][]byte) [][]byte {
			// The forger recomputes the edited record's own hash: the next record's prev no longer matches.
			line := bytes.TrimSuffix(l[3], []byte("\n"))
			line = bytes.Replace(line, []byte(`"action":"accept"`), []byte(`"action":"reject"`), 1)
			sum := sha256.Sum256(append(bytes.Clone(line[:len(line)-hashSuffix]), '}'))
			l[3] = append(append(append(bytes.Clone(line[:len(line)-hashSuffix]), hashMember...), hex.EncodeToString(sum[:])+"\"}\n"...), nil...)
			return l
		}, ProblemLink, 5, 5},
		{"deleted", func(l [][]byte) [][]byte { return append(l[:3], l[4:]...) }, ProblemMissing, 4, 5},
		{"deleted two", func(l [][]byte) [][]byte { return append(l[:3], l[5:]...) }, ProblemMissing, 4, 6},
		{"deleted first", func(l [][]byte) [][]byte { return l[1:] }, ProblemStart, 1, 2},
		{"reordered pair", func(l [][]byte) [][]byte { l[3], l[4] = l[4], l[3]; return l }, ProblemReordered, 4, 5},
		{"moved back", func(l [][]byte) [][]byte {
			moved := l[2]
			l = append(l[:2], l[3:]...)
			return append(l[:6], append([][]byte{moved}, l[6:]...)...)
		}, ProblemMissing, 3, 4},
		{"duplicated", func(l [][]byte) [][]byte {
			return append(l[:4], append([][]byte{l[3]}, l[4:]...)...)
		}, ProblemReordered, 5, 4},
		{"truncated last line", func(l [][]byte) [][]byte { l[n-1] = l[n-1][:len(l[n-1])/2]; return l }, ProblemIncomplete, n, 0},
		{"newline removed", func(l [][]byte) [][]byte { l[n-1] = bytes.TrimSuffix(l[n-1], []byte("\n")); return l }, ProblemIncomplete, n, 0},
		{"garbage line", func(l [][]byte) [][]byte {
			return append(l[:5], append([][]byte{[]byte("hello\n")}, l[5:]...)...)
		}, ProblemMalformed, 6, 0},
		{"not json", func(l [][]byte) [][]byte { l[6] = bytes.Replace(l[6], []byte(`"mx"`), []byte(`"mx`), 1); return l }, ProblemMalformed, 7, 0},
		{"future version", func(l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte(`{"v":1,`), []byte(`{"v":2,`), 1)
			return l
		}, ProblemMalformed, 1, 0},
		{"too long", func(l [][]byte) [][]byte { l[2] = append(bytes.Repeat([]byte("x"), maxLine), '\n'); return l }, ProblemMalformed, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeChain(t, t.TempDir(), n, Options{})
			writeLines(t, path, tc.tamper(readLines(t, path)))
			_, err := verifyPath(t, path, "")
			ce := chainErr(t, err, tc.problem, tc.line, tc.seq)
			if ce.File != path || !strings.Contains(ce.Error(), path+":") {
				t.Fatalf("error does not name the file: %v", ce)
			}
			t.Log(ce)
		})
	}
}

func TestVerifyPrevHash(t *testing.T) {
	path := writeChain(t, t.TempDir(), 6, Options{})
	lines := readLines(t, path)
	var first struct{ Hash string }
	if err := json.Unmarshal(lines[2], &first); err != nil {
		t.Fatal(err)
	}
	// The part of the chain after record 3, checked from record 3's hash (a checkpoint).
	rest := bytes.Join(lines[3:], nil)
	if _, n, err := Verify(bytes.NewReader(rest), first.Hash); err != nil || n != 3 {
		t.Fatalf("from checkpoint: %d, %v", n, err)
	}
	if _, n, err := Verify(bytes.NewReader(rest), AnyPrev); err != nil || n != 3 {
		t.Fatalf("any prev: %d, %v", n, err)
	}
	_, _, err := Verify(bytes.NewReader(rest), "")
	ce := chainErr(t, err, ProblemStart, 1, 4)
	if !strings.Contains(ce.Detail, "-prev "+first.Hash) {
		t.Fatalf("the error should say how to go on: %v", ce)
	}
	_, _, err = Verify(bytes.NewReader(rest), strings.Repeat("ab", 32))
	chainErr(t, err, ProblemLink, 1, 4)
	if _, _, err := Verify(bytes.NewReader(rest), "xyz"); err == nil {
		t.Fatal("a malformed previous hash was accepted")
	}
	// An empty log is an intact, empty chain.
	if last, n, err := Verify(strings.NewReader(""), ""); err != nil || n != 0 || last != genesis {
		t.Fatalf("empty: %s %d %v", last, n, err)
	}
	if last, n, err := Verify(strings.NewReader(""), AnyPrev); err != nil || n != 0 || last != "" {
		t.Fatalf("empty, any prev: %q %d %v", last, n, err)
	}
}

func TestVerifyAnchors(t *testing.T) {
	dir := t.TempDir()
	path := writeChain(t, dir, 8, Options{})
	lines := readLines(t, path)
	var rec struct{ Hash string }
	json.Unmarshal(lines[7], &rec)
	if _, err := verifyPath(t, path, "", rec.Hash); err != nil {
		t.Fatal(err)
	}
	// Cutting records off the end keeps the chain intact; only the anchor shows it.
	writeLines(t, path, lines[:6])
	mustIntact(t, path, 6)
	_, err := verifyPath(t, path, "", rec.Hash)
	ce := chainErr(t, err, ProblemAnchor, 0, 6)
	if !strings.Contains(ce.Error(), "end of chain") {
		t.Fatalf("error: %v", ce)
	}
	if _, err := VerifyFiles([]string{path}, "", "nothex"); err == nil {
		t.Fatal("malformed anchor accepted")
	}
}

func TestChainFiles(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Options{Path: filepath.Join(dir, "audit.log"), MaxBytes: 1})
	for i := range 4 {
		if err := l.Append(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	files, err := ChainFiles(filepath.Join(dir, "audit.log"))
	if err != nil || len(files) != 4 || files[3] != filepath.Join(dir, "audit.log") {
		t.Fatalf("%q %v", files, err)
	}
	// A directory stands for the log in it; the lock file is not part of it.
	if d, err := ChainFiles(dir); err != nil || strings.Join(d, ",") != strings.Join(files, ",") {
		t.Fatalf("dir: %q %v", d, err)
	}
	// One rotated file is just that file.
	if one, err := ChainFiles(files[1]); err != nil || len(one) != 1 || one[0] != files[1] {
		t.Fatalf("rotated: %q %v", one, err)
	}
	os.WriteFile(filepath.Join(dir, "other.log"), nil, 0o600)
	if _, err := ChainFiles(dir); err != nil {
		t.Fatalf("audit.log should win over other files: %v", err)
	}
	two := t.TempDir()
	os.WriteFile(filepath.Join(two, "a.log"), nil, 0o600)
	os.WriteFile(filepath.Join(two, "b.log"), nil, 0o600)
	if _, err := ChainFiles(two); err == nil || !strings.Contains(err.Error(), "several") {
		t.Fatalf("ambiguous directory: %v", err)
	}
	if _, err := ChainFiles(filepath.Join(t.TempDir(), "audit.log")); err == nil {
		t.Fatal("no log, no error")
	}
}
