package audit

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadFrom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var hooked []uint64
	l := openLog(t, Options{Path: path, MaxBytes: 4000, Written: func(seq uint64, line []byte) {
		if !strings.HasPrefix(string(line), `{"v":1,"seq":`) || strings.HasSuffix(string(line), "\n") {
			t.Errorf("Written got %q", line)
		}
		hooked = append(hooked, seq)
	}})
	for i := range 20 {
		if err := l.Append(sampleRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if want := seqRange(1, 20); !slices.Equal(hooked, want) {
		t.Fatalf("Written saw %v, want %v", hooked, want)
	}
	files, _ := ChainFiles(path)
	if len(files) < 4 {
		t.Fatalf("want rotated files, got %d", len(files))
	}
	read := func(after uint64) ([]uint64, error) {
		var got []uint64
		_, err := ReadFrom(path, after, func(seq uint64, line []byte) error {
			if _, err := parseLine(line); err != nil {
				t.Errorf("seq %d: %v", seq, err)
			}
			got = append(got, seq)
			return nil
		})
		return got, err
	}
	for _, after := range []uint64{0, 1, 7, 19, 20, 25} {
		got, err := read(after)
		if err != nil || !slices.Equal(got, seqRange(after+1, 20)) {
			t.Errorf("ReadFrom(after %d) = %v, %v", after, got, err)
		}
	}
	// A file before the one wanted may be damaged: it is not read.
	b, _ := os.ReadFile(files[0])
	os.WriteFile(files[0], []byte(strings.Replace(string(b), `"mx"`, `"MX"`, 1)), 0o600)
	if got, err := read(19); err != nil || !slices.Equal(got, []uint64{20}) {
		t.Errorf("after damage in an earlier file: %v, %v", got, err)
	}
	got, err := read(0)
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Problem != ProblemEdited || ce.Seq != 1 || len(got) != 0 {
		t.Errorf("reading the damaged file: %v, %v", got, err)
	}
	// fn's error stops it and is returned as it is.
	stop := errors.New("stop")
	n, err := ReadFrom(path, 10, func(uint64, []byte) error { return stop })
	if n != 1 || err != stop {
		t.Errorf("stopping: %d, %v", n, err)
	}
	// No log yet: nothing to read.
	if n, err := ReadFrom(filepath.Join(t.TempDir(), "none.log"), 0, nil); n != 0 || err != nil {
		t.Errorf("no log: %d, %v", n, err)
	}
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}
