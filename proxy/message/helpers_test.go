package message

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	gomessage "github.com/emersion/go-message"
)

// crlf turns the LF line endings of a Go literal into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func mustParse(t testing.TB, raw string, lim Limits) *Message {
	t.Helper()
	m, err := Parse(strings.NewReader(raw), int64(len(raw)), lim)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := checkIndex(m); err != nil {
		t.Fatalf("index invariant: %v", err)
	}
	return m
}

// write applies c and returns the output.
func write(t testing.TB, m *Message, c *Changes) string {
	t.Helper()
	var b bytes.Buffer
	n, err := m.WriteTo(&b, c)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(b.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, b.Len())
	}
	return b.String()
}

func kinds(ds []Defect) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Kind)
	}
	return out
}

func hasKind(ds []Defect, kind string) bool {
	for _, d := range ds {
		if d.Kind == kind {
			return true
		}
	}
	return false
}

// checkIndex verifies what every index must satisfy, whatever the input.
func checkIndex(m *Message) error {
	ps := m.Parts()
	if len(ps) == 0 {
		return fmt.Errorf("no parts")
	}
	if ps[0].Header.Start != 0 || ps[0].Body.End != m.Size() || ps[0].Parent != -1 || ps[0].Depth != 0 {
		return fmt.Errorf("part 0 is %+v (size %d)", ps[0], m.Size())
	}
	all := 0
	derivedSeen := false
	for i := range ps {
		p := &ps[i]
		all += len(p.Defects)
		if p.Derived != "" {
			derivedSeen = true
		}
		if p.ID != i {
			return fmt.Errorf("part %d has ID %d", i, p.ID)
		}
		size := m.Size()
		if src := m.meta[i].src; src != nil {
			size = sourceSize(src)
		}
		if !(0 <= p.Header.Start && p.Header.Start <= p.Header.End && p.Header.End <= p.Body.Start &&
			p.Body.Start <= p.Body.End && p.Body.End <= size) {
			return fmt.Errorf("part %d ranges out of order: header %v body %v size %d", i, p.Header, p.Body, m.Size())
		}
		if p.ContentType == "" || p.Encoding == "" {
			return fmt.Errorf("part %d: empty content type or encoding", i)
		}
		meta := &m.meta[i]
		prev := p.Header.Start
		for _, f := range meta.fields {
			if f.r.Start < prev || f.r.End > p.Header.End || f.r.Start >= f.r.End {
				return fmt.Errorf("part %d: field %s range %v outside header %v", i, f.name, f.r, p.Header)
			}
			prev = f.r.End
		}
		if i == 0 {
			continue
		}
		par := &ps[p.Parent]
		if p.Parent >= i || p.Depth != par.Depth+1 {
			return fmt.Errorf("part %d: parent %d depth %d", i, p.Parent, p.Depth)
		}
		if !slices.Contains(par.Children, i) {
			return fmt.Errorf("part %d is not among the children of its parent %d", i, p.Parent)
		}
		if p.Derived != "" {
			continue // a reading of its parent's content or header: checked above against its source
		}
		if par.Derived == "" && derivedSeen {
			return fmt.Errorf("part %d of the structure comes after a derived part", i)
		}
		if p.Header.Start < par.Body.Start || p.Body.End > par.Body.End {
			return fmt.Errorf("part %d (%v..%v) outside its parent's body %v", i, p.Header, p.Body, par.Body)
		}
		if !meta.embedded && (meta.delim < par.Body.Start || meta.delim > p.Header.Start) {
			return fmt.Errorf("part %d: delimiter at %d outside [%d, %d]", i, meta.delim, par.Body.Start, p.Header.Start)
		}
	}
	for i := range ps {
		var ch []int
		for _, c := range ps[i].Children {
			if ps[c].Derived == "" {
				ch = append(ch, c)
			}
		}
		for j := 1; j < len(ch); j++ {
			a, b := &ps[ch[j-1]], &ps[ch[j]]
			if m.meta[ch[j]].delim < a.Body.End {
				return fmt.Errorf("part %d starts (delimiter %d) before part %d ends (%d)", b.ID, m.meta[ch[j]].delim, a.ID, a.Body.End)
			}
		}
	}
	n := 0
	for _, d := range m.Defects() {
		if d.Part >= 0 {
			n++
		}
	}
	if n != all {
		return fmt.Errorf("%d part defects in Defects(), %d in the parts", n, all)
	}
	var b bytes.Buffer
	if _, err := m.WriteTo(&b, nil); err != nil {
		return err
	}
	raw, _ := io.ReadAll(m.Raw())
	if !bytes.Equal(b.Bytes(), raw) {
		return fmt.Errorf("WriteTo(nil) is not the input")
	}
	return nil
}

// sourceSize returns the size of a derived part's source.
func sourceSize(src io.ReaderAt) int64 {
	switch r := src.(type) {
	case *bytes.Reader:
		return r.Size()
	case *io.SectionReader:
		return r.Size()
	}
	return -1
}

// reparse reads out with go-message, walking every part and reading every body: the output of the splicer must
// be a message a standard reader accepts.
func reparse(t testing.TB, out string) {
	t.Helper()
	e, err := gomessage.Read(strings.NewReader(out))
	if err != nil {
		t.Fatalf("go-message cannot read the output: %v\n%s", err, out)
	}
	err = e.Walk(func(path []int, e *gomessage.Entity, err error) error {
		if err != nil {
			return err
		}
		if mr := e.MultipartReader(); mr != nil {
			return nil
		}
		_, err = io.ReadAll(e.Body)
		return err
	})
	if err != nil {
		t.Fatalf("go-message cannot walk the output: %v\n%s", err, out)
	}
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// corpusFiles returns every message of testdata/corpus.
func corpusFiles(t testing.TB) []string {
	t.Helper()
	root := filepath.Join(repoRoot(), "testdata", "corpus")
	var files []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); ext == ".eml" || ext == ".raw" {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 190 {
		t.Fatalf("only %d corpus files under %s", len(files), root)
	}
	return files
}

func readCorpus(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "testdata", "corpus", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func body(t testing.TB, m *Message, id int, text bool) string {
	t.Helper()
	var r io.Reader
	var err error
	if text {
		r, err = m.Text(id)
	} else {
		r, err = m.Decoded(id)
	}
	if err != nil {
		t.Fatalf("part %d: %v", id, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("part %d: %v", id, err)
	}
	return string(b)
}

func rawOf(m *Message, r Range) string {
	b := make([]byte, r.Len())
	_, _ = m.src.ReadAt(b, r.Start)
	return string(b)
}
