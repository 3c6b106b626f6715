package evasion

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/postern/postern/proxy/message"
)

func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// The technique list in testdata is the generator's: run `go generate ./internal/evasion` after changing Cases.
func TestTechniquesCurrent(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root(), "testdata", "evasion", "techniques.tsv"))
	if err != nil || string(b) != TSV() {
		t.Fatalf("testdata/evasion/techniques.tsv is not current (%v): run go generate ./internal/evasion", err)
	}
	readme, err := os.ReadFile(filepath.Join(root(), "testdata", "evasion", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	classes := map[string]int{}
	for _, c := range Cases() {
		if ids[c.ID] || c.ID == "" || c.Technique == "" || len(c.Raw) == 0 {
			t.Errorf("case %q: duplicate or incomplete", c.ID)
		}
		ids[c.ID] = true
		classes[c.Class]++
		if c.Payload != PayloadContent && c.Payload != PayloadName || c.Payload == PayloadName && c.Name == "" {
			t.Errorf("%s: payload %q name %q", c.ID, c.Payload, c.Name)
		}
		if !strings.Contains(string(readme), "`"+c.ID+"`") {
			t.Errorf("%s is not described in testdata/evasion/README.md", c.ID)
		}
	}
	for _, cl := range []string{Valid, Edge, Unusual, OffStandard} {
		if classes[cl] < 4 {
			t.Errorf("only %d %s cases", classes[cl], cl)
		}
	}
	if !bytes.Contains(Zip(), []byte("eicar.com")) {
		t.Error("eicar.zip does not name eicar.com")
	}
}

// TestHostExposesPayload is the host-level half of the corpus test: for every message, the index hands plugins
// the payload, as decoded content or as a candidate file name, and the message is written back byte-identical.
func TestHostExposesPayload(t *testing.T) {
	for _, c := range Cases() {
		t.Run(c.ID, func(t *testing.T) {
			m, err := message.Parse(bytes.NewReader(c.Raw), int64(len(c.Raw)), message.DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			if Exposed(m, c) < 0 {
				for _, p := range m.Parts() {
					t.Logf("part %d: %s %s %q derived %q defects %v", p.ID, p.ContentType, p.Encoding, p.Filenames, p.Derived, p.Defects)
				}
				t.Errorf("%s payload (%s) not exposed", c.Payload, c.Name)
			}
			var out bytes.Buffer
			if _, err := m.WriteTo(&out, nil); err != nil || !bytes.Equal(out.Bytes(), c.Raw) {
				t.Errorf("not written back byte-identical: %v", err)
			}
		})
	}
}
