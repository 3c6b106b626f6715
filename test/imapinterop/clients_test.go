package imapinterop

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testdovecot"
	"github.com/postern/postern/internal/testplugins"
)

// pyIMAP reads INBOX with python's imaplib the way a simple client does: LIST, SELECT, a header listing with
// RFC822.SIZE, each body with a non-PEEK BODY[] (which sets \Seen), the flags, a SEARCH, then APPEND to Sent.
// It prints one JSON object.
const pyIMAP = `
import imaplib, json, re, sys, hashlib
host, port = sys.argv[1], int(sys.argv[2])
M = imaplib.IMAP4(host, port, timeout=60)
out = {"caps": sorted(M.capabilities)}
M.login("alice", "alicepass")
typ, boxes = M.list()
out["list"] = [b.decode() for b in boxes]
typ, data = M.select("INBOX")
out["exists"] = int(data[0])
typ, data = M.uid("FETCH", "1:*", "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
sizes = {}
for item in data:
    if isinstance(item, tuple):
        m = re.search(rb"UID (\d+)", item[0]); s = re.search(rb"RFC822.SIZE (\d+)", item[0])
        sizes[int(m.group(1))] = int(s.group(1))
out["sizes"] = sizes
bodies = {}
for uid in sorted(sizes):
    typ, data = M.uid("FETCH", str(uid), "(BODY[])")
    assert typ == "OK", (typ, data)
    body = data[0][1]
    bodies[uid] = {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}
out["bodies"] = bodies
typ, data = M.uid("FETCH", "1:*", "(FLAGS)")
out["flags"] = [d.decode() for d in data if d]
typ, data = M.uid("SEARCH", None, "SUBJECT", "plain")
out["search"] = data[0].decode()
try:
    M.create("Sent")
except Exception:
    pass
msg = b"From: alice@example.com\r\nTo: bob@other.test\r\nSubject: sent by imaplib\r\n\r\nHi Bob.\r\n"
typ, data = M.append("Sent", "(\\Seen)", None, msg)
out["append"] = [typ, data[0].decode()]
M.logout()
print(json.dumps(out))
`

func TestPythonImaplib(t *testing.T) {
	need(t, "python3")
	r := newRig(t, testdovecot.Options{})
	r.each(t, func(t *testing.T, tg target) {
		ref := reference(t, tg.addr)
		checkFiltered(t, tg, ref)
		host, port := hostPort(tg.addr)
		out, err := run(t, 2*time.Minute, "python3", "-c", pyIMAP, host, port)
		if err != nil {
			t.Fatalf("imaplib: %v\n%s", err, out)
		}
		var got struct {
			Caps   []string
			List   []string
			Exists int
			Sizes  map[string]int64
			Bodies map[string]struct {
				Len    int64
				SHA256 string
			}
			Flags  []string
			Search string
			Append []string
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("imaplib output: %v\n%s", err, out)
		}
		if got.Exists != len(messages) || len(got.Bodies) != len(messages) {
			t.Fatalf("imaplib saw %d messages (%d bodies), want %d:\n%s", got.Exists, len(got.Bodies), len(messages), out)
		}
		for _, f := range ref {
			uid := fmt.Sprint(f.UID)
			if got.Sizes[uid] != int64(len(f.Body)) || got.Bodies[uid].Len != int64(len(f.Body)) ||
				got.Bodies[uid].SHA256 != digest(f.Body) {
				t.Errorf("UID %s: imaplib got size %d, body %d bytes %s; want %d bytes %s", uid, got.Sizes[uid],
					got.Bodies[uid].Len, got.Bodies[uid].SHA256, len(f.Body), digest(f.Body))
			}
		}
		// The non-PEEK BODY[] set \Seen upstream on every message.
		for _, fl := range got.Flags {
			if !strings.Contains(fl, `\Seen`) {
				t.Errorf("after BODY[]: %s, want \\Seen", fl)
			}
		}
		if got.Search != "1" {
			t.Errorf("UID SEARCH SUBJECT plain = %q, want 1", got.Search)
		}
		if len(got.Append) != 2 || got.Append[0] != "OK" || !strings.Contains(got.Append[1], "APPENDUID") {
			t.Errorf("APPEND to Sent: %v, want OK [APPENDUID ...]", got.Append)
		}
	})
}

func hostPort(addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}

// TestCurl reads the mailbox list, a search and each message with curl's imap:// URLs.
func TestCurl(t *testing.T) {
	need(t, "curl")
	r := newRig(t, testdovecot.Options{})
	r.each(t, func(t *testing.T, tg target) {
		ref := reference(t, tg.addr)
		base := "imap://alice:alicepass@" + tg.addr
		out, err := run(t, time.Minute, "curl", "-sS", "--max-time", "30", base+"/")
		if err != nil || !strings.Contains(out, "INBOX") {
			t.Fatalf("curl LIST: %v\n%s", err, out)
		}
		out, err = run(t, time.Minute, "curl", "-sS", "--max-time", "30", base+"/INBOX?SUBJECT%20dots")
		if err != nil || strings.TrimSpace(out) != "* SEARCH 2" {
			t.Errorf("curl SEARCH: %v\n%q", err, out)
		}
		for _, f := range ref {
			out, err := run(t, time.Minute, "curl", "-sS", "--max-time", "30", fmt.Sprintf("%s/INBOX;UID=%d", base, f.UID))
			if err != nil {
				t.Fatalf("curl UID %d: %v\n%s", f.UID, err, out)
			}
			if out != string(f.Body) {
				t.Errorf("curl UID %d: %d bytes %s, want %d bytes %s", f.UID, len(out), digest([]byte(out)), len(f.Body), digest(f.Body))
			}
		}
	})
}

// mbsyncConfig syncs alice's INBOX into a Maildir, pulling only (nothing is changed upstream).
const mbsyncConfig = `IMAPAccount alice
Host %s
Port %s
User alice
Pass alicepass
SSLType None
AuthMechs LOGIN
PipelineDepth 50

IMAPStore remote
Account alice

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel inbox
Far :remote:INBOX
Near :local:INBOX
Create Near
Sync Pull
SyncState *
`

// TestMbsync syncs INBOX through the target into a Maildir: every message equals what the target serves, and a
// second sync changes nothing.
func TestMbsync(t *testing.T) {
	need(t, "mbsync")
	r := newRig(t, testdovecot.Options{})
	r.each(t, func(t *testing.T, tg target) {
		ref := reference(t, tg.addr)
		dir := t.TempDir()
		host, port := hostPort(tg.addr)
		rc := filepath.Join(dir, "mbsyncrc")
		if err := os.WriteFile(rc, []byte(fmt.Sprintf(mbsyncConfig, host, port, dir, dir)), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, 2*time.Minute, "mbsync", "-c", rc, "-V", "inbox")
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
		first := maildir(t, filepath.Join(dir, "INBOX"))
		if len(first) != len(ref) {
			t.Fatalf("mbsync stored %d messages, want %d:\n%s", len(first), len(ref), out)
		}
		// mbsync stores LF line ends in a Maildir and adds an X-TUID header line (its own bookkeeping): the rest
		// is byte for byte what the target served.
		want := map[string]bool{}
		for _, f := range ref {
			want[digest([]byte(strings.ReplaceAll(string(f.Body), "\r\n", "\n")))] = true
		}
		for name, b := range first {
			if !want[digest([]byte(tuid.ReplaceAllString(b, "")))] {
				t.Errorf("mbsync stored %s, which is not a message the target served:\n%.400s", name, b)
			}
		}
		out, err = run(t, 2*time.Minute, "mbsync", "-c", rc, "-V", "inbox")
		if err != nil {
			t.Fatalf("second mbsync: %v\n%s", err, out)
		}
		second := maildir(t, filepath.Join(dir, "INBOX"))
		// Same file names (so same UIDs and flags) and same contents.
		same := len(first) == len(second)
		for name, b := range first {
			same = same && second[name] == b
		}
		if !same {
			t.Errorf("the second sync changed the Maildir:\nfirst  %v\nsecond %v\n%s", keys(first), keys(second), out)
		}
	})
}

var tuid = regexp.MustCompile(`(?m)^X-TUID: [^\n]*\n`)

// maildir reads the messages of a Maildir folder (cur and new), by file name.
func maildir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sub := range []string{"cur", "new"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[sub+"/"+e.Name()] = string(b)
		}
	}
	return out
}

func keys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// imapflowDir holds package.json and package-lock.json; npm ci installs the locked imapflow there.
func imapflowDir(t *testing.T) string {
	t.Helper()
	need(t, "node", "npm")
	dir := filepath.Join(testplugins.Root(), "test", "imapinterop", "imapflow")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "imapflow", "package.json")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	return dir
}

// TestImapflow lists INBOX with imapflow the way it syncs (UID, BODYSTRUCTURE, ENVELOPE, RFC822.SIZE over 1:*)
// and downloads each message: sizes, bodies and structure sizes agree with the target's reference.
func TestImapflow(t *testing.T) {
	dir := imapflowDir(t)
	r := newRig(t, testdovecot.Options{})
	r.each(t, func(t *testing.T, tg target) {
		ref := reference(t, tg.addr)
		host, port := hostPort(tg.addr)
		out, err := run(t, 2*time.Minute, "node", filepath.Join(dir, "read.js"), host, port, "alice", "alicepass")
		if err != nil {
			t.Fatalf("imapflow: %v\n%s", err, out)
		}
		var got struct {
			Messages []struct {
				UID      uint32
				Size     int64
				Subject  string
				PartSize int64
				Length   int64
				SHA256   string
			}
			Append struct{ UID uint32 }
		}
		if err := json.Unmarshal([]byte(lastLine(out)), &got); err != nil {
			t.Fatalf("imapflow output: %v\n%s", err, out)
		}
		if len(got.Messages) != len(ref) {
			t.Fatalf("imapflow listed %d messages, want %d:\n%s", len(got.Messages), len(ref), out)
		}
		for i, m := range got.Messages {
			f := ref[i]
			if m.UID != f.UID || m.Size != int64(len(f.Body)) || m.Length != int64(len(f.Body)) || m.SHA256 != digest(f.Body) {
				t.Errorf("imapflow UID %d: size %d, downloaded %d bytes %s; want UID %d, %d bytes %s", m.UID, m.Size,
					m.Length, m.SHA256, f.UID, len(f.Body), digest(f.Body))
			}
			if m.Subject == "" {
				t.Errorf("imapflow UID %d: no envelope subject", m.UID)
			}
		}
		if got.Append.UID == 0 {
			t.Errorf("imapflow APPEND to Drafts returned no UID:\n%s", out)
		}
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
