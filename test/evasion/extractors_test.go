package evasion

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/postern/postern/internal/evasion"
	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/message"
)

// extracted is one file a MIME extractor took out of a message.
type extracted struct {
	Name string `json:"name"` // "" when the extractor made a name up
	Data []byte `json:"data"`
}

// synthetic matches the names the extractors invent for parts without one.
var synthetic = regexp.MustCompile(`^(textfile\d+|part\d+|.*\.desc)$`)

// fromDir reads what an extractor wrote into dir.
func fromDir(t *testing.T, dir string) []extracted {
	t.Helper()
	var out []extracted
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		name := e.Name()
		if synthetic.MatchString(name) {
			name = ""
		}
		out = append(out, extracted{Name: name, Data: b})
	}
	return out
}

// pythonScript prints, for every file named on the command line, what Python's email package extracts with
// both of its policies: every leaf part's file name and decoded payload.
const pythonScript = `
import email, email.policy, json, sys
out = {}
for path in sys.argv[1:]:
    raw = open(path, "rb").read()
    files = []
    for pol in (email.policy.compat32, email.policy.default):
        try:
            msg = email.message_from_bytes(raw, policy=pol)
            for part in msg.walk():
                if part.is_multipart():
                    continue
                try:
                    name = part.get_filename()
                except Exception:
                    name = None
                try:
                    data = part.get_payload(decode=True) or b""
                except Exception:
                    data = b""
                files.append({"name": str(name) if name else "", "data": list(data)})
        except Exception as e:
            print("error", path, e, file=sys.stderr)
    out[path] = files
json.dump(out, sys.stdout)
`

type pyFile struct {
	Name string `json:"name"`
	Data []int  `json:"data"`
}

// extractors runs python3's email, ripmime and munpack on every file, returning per tool and file what they
// extracted. A tool that is not installed fails the test: .ci/deps installs them.
func extractors(t *testing.T, files []string) map[string]map[string][]extracted {
	t.Helper()
	for _, tool := range []string{"python3", "ripmime", "munpack"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (run .ci/deps): %v", tool, err)
		}
	}
	res := map[string]map[string][]extracted{"python-email": {}, "ripmime": {}, "munpack": {}}
	cmd := exec.Command("python3", append([]string{"-c", pythonScript}, files...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.String())
	}
	var py map[string][]pyFile
	if err := json.Unmarshal(out, &py); err != nil {
		t.Fatal(err)
	}
	for path, fs := range py {
		for _, f := range fs {
			b := make([]byte, len(f.Data))
			for i, v := range f.Data {
				b[i] = byte(v)
			}
			res["python-email"][path] = append(res["python-email"][path], extracted{Name: f.Name, Data: b})
		}
	}
	for _, path := range files {
		dir := t.TempDir()
		// ripmime writes attachments and text parts; its exit status is not reliable on odd input, its output is.
		exec.Command("ripmime", "-i", path, "-d", dir, "--no-paranoid").Run()
		res["ripmime"][path] = fromDir(t, dir)
		dir = t.TempDir()
		c := exec.Command("munpack", "-q", "-t", "-C", dir, path)
		c.Run()
		res["munpack"][path] = fromDir(t, dir)
	}
	return res
}

// TestExtractorsAgree is the reference for "what a client sees": for every message of the evasion corpus and
// of the clean corpus, any eicar.zip or file name that python3's email package, ripmime or munpack extracts, the
// host exposes to plugins too (as a part's decoded content, or among a part's candidate file names), unless the
// host flagged that it could not index the message completely (a bound: plugins block such mail).
func TestExtractorsAgree(t *testing.T) {
	dir := t.TempDir()
	cases := evasion.Cases()
	evasive := len(cases)
	corpus := filepath.Join(testplugins.Root(), "testdata", "corpus")
	err := filepath.WalkDir(corpus, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".eml") || strings.HasSuffix(p, ".raw")) {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(corpus, p)
			cases = append(cases, evasion.Case{ID: "corpus/" + rel, Raw: b})
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	byPath := map[string]evasion.Case{}
	for i, c := range cases {
		p := filepath.Join(dir, fmt.Sprintf("%03d.eml", i))
		if err := os.WriteFile(p, c.Raw, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
		byPath[p] = c
	}
	res := extractors(t, files)
	found := map[string]int{}
	names := 0
	for tool, perFile := range res {
		for path, fs := range perFile {
			c := byPath[path]
			m, err := message.Parse(bytes.NewReader(c.Raw), int64(len(c.Raw)), message.DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			if m.LimitExceeded() != "" {
				continue // not indexed completely, and flagged so: blocked by default
			}
			var hostNames []string
			for _, p := range m.Parts() {
				hostNames = append(hostNames, p.Filenames...)
			}
			for _, f := range fs {
				if bytes.Contains(f.Data, evasion.Zip()) {
					found[tool]++
					if evasion.Exposed(m, evasion.Case{Payload: evasion.PayloadContent}) < 0 {
						t.Errorf("%s: %s extracts eicar.zip (as %q); the host does not expose it", c.ID, tool, f.Name)
					}
				}
				if f.Name == "" {
					continue
				}
				names++
				n := message.NormalizeFilename(fsName(f.Name))
				if !slices.ContainsFunc(hostNames, func(h string) bool { return sameShownName(n, h) }) {
					t.Errorf("%s: %s extracts a file named %q; the host's names are %q", c.ID, tool, f.Name, hostNames)
				}
				if c.Payload == evasion.PayloadName && evasion.SameName(n, c.Name) {
					found[tool]++
				}
			}
		}
	}
	t.Logf("%d messages (%d evasive), %d file names extracted; payloads found per extractor (the host exposes each): %v",
		len(cases), evasive, names, found)
}

// sameShownName reports whether an extractor's name for a file is the host's name h, up to what the extractor
// does to make names safe for the local file system: munpack replaces unsafe characters, spaces and non-ASCII
// with 'X'; ripmime replaces some with '_', writes raw 8-bit bytes (read here as Latin-1), numbers repeated
// names, and joins a plain filename with its RFC 2231 form into one name. What must agree exactly is what
// decides how the file is opened: its extension.
func sameShownName(name, h string) bool {
	if evasion.SameName(name, h) || sanitized(name, []string{h}) {
		return true
	}
	ext := func(s string) string {
		s = strings.ToLower(strings.TrimRight(s, ". "))
		if i := strings.LastIndexByte(s, '.'); i >= 0 {
			return s[i:]
		}
		return ""
	}
	skeleton := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, strings.ToLower(s))
	}
	if ext(name) != ext(h) {
		return false
	}
	// Every ASCII letter and digit the extractor kept is in the host's name, in order.
	a, b := skeleton(strings.TrimSuffix(strings.ToLower(name), ext(name))), skeleton(h)
	for _, r := range a {
		i := strings.IndexRune(b, r)
		if i < 0 {
			if r == 'x' {
				continue // munpack's replacement character
			}
			return false
		}
		b = b[i+1:]
	}
	return true
}

// sanitized reports whether name is a name the host knows, rewritten by the tool the way it makes names safe
// for the local file system: munpack replaces unsafe characters and spaces with 'X' and appends ".1" to a name
// it has written already; ripmime writes the bytes it decoded (Latin-1 here), and joins a plain filename and its
// RFC 2231 form into one name, which then ends in one the host knows.
func sanitized(name string, names []string) bool {
	for _, h := range names {
		if strings.HasSuffix(strings.ToLower(name), strings.ToLower(h)) {
			return true
		}
		for _, v := range []string{h, strings.Map(func(r rune) rune {
			if r <= 0x20 || r >= 0x7f || strings.ContainsRune(`/\:*?"<>|`, r) {
				return 'X'
			}
			return r
		}, h)} {
			if evasion.SameName(name, v) || strings.HasPrefix(strings.ToLower(name), strings.ToLower(v)+".") {
				return true
			}
			if i := strings.IndexByte(name, '_'); i > 0 && evasion.SameName(name[i+1:], v) {
				return true
			}
		}
	}
	return false
}

// fsName reads a name the way a file manager shows it: bytes that are not UTF-8 as Latin-1.
func fsName(name string) string {
	if utf8.ValidString(name) {
		return name
	}
	r := make([]rune, 0, len(name))
	for _, b := range []byte(name) {
		r = append(r, rune(b))
	}
	return string(r)
}
