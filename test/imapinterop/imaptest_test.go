package imapinterop

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/testdovecot"
	"github.com/postern/postern/internal/testplugins"
)

var (
	imaptestOnce sync.Once
	imaptestBin  string
	imaptestErr  error
)

// imaptest returns Dovecot's imaptest: $IMAPTEST (make test sets it), else build/imaptest/bin/imaptest, built
// there from the kit in imaptest/ if missing (about 20 s; build.sh installs its Debian build dependencies).
func imaptest(t testing.TB) string {
	t.Helper()
	imaptestOnce.Do(func() {
		if p := os.Getenv("IMAPTEST"); p != "" {
			imaptestBin = p
		} else {
			prefix := filepath.Join(testplugins.Root(), "build", "imaptest")
			imaptestBin = filepath.Join(prefix, "bin", "imaptest")
			if _, err := os.Stat(imaptestBin); err != nil {
				out, err := exec.Command(filepath.Join(testplugins.Root(), "test", "imapinterop", "imaptest", "build.sh"), prefix).CombinedOutput()
				if err != nil {
					imaptestErr = fmt.Errorf("building imaptest (make imaptest): %v\n%s", err, out)
				}
			}
		}
	})
	if imaptestErr != nil {
		t.Fatal(imaptestErr)
	}
	return imaptestBin
}

// imaptestExcluded are the scripted groups not run through Postern, with the reason. Groups that need a
// capability Postern does not advertise are skipped by imaptest itself (it reads CAPABILITY). "limit:" marks what
// go-imap's imapserver cannot do (documented for users); "bug:" marks a proxy bug found by the group, to remove
// from this list with its fix.
var imaptestExcluded = map[string]string{
	"id": "limit: imapserver has no ID command, so ID is not advertised; imaptest runs the group anyway (it " +
		"does not check this capability), and before login an unknown command gets BAD and BYE",
}

// imaptestAdapted are expectations changed in the groups run through Postern, with the reason: each replaces one
// literal of the group's script with a variable, which imaptest matches against anything (consistently).
var imaptestAdapted = map[string]struct{ from, to, why string }{
	"fetch-envelope": {`"@route"`, `$route`, "limit: ENVELOPE has no source route (go-imap's Address has no " +
		"at-domain-list field): <@route:user@domain> is (NIL NIL \"user\" \"domain\")"},
	"select": {"messages 2 recent 2 uidnext", "messages 2 recent $recent uidnext", "limit: STATUS RECENT of a " +
		"mailbox other than the selected one is 0 (go-imap's client cannot ask for it)"},
	"atoms": {"ok list \"\" !#$$&'", "no list \"\" !#$$&'", "limit: imapserver decodes a LIST pattern as modified " +
		"UTF-7 before the proxy sees it and refuses one that is not (\"&'+,-\" here) with NO [SERVERBUG]; Dovecot " +
		"matches it literally"},
}

// scriptedTests copies imaptest's scripted tests without the excluded groups (and their mboxes); with
// IMAPTEST_GROUPS (comma-separated names) only those groups; with the expectations in adapted changed.
func scriptedTests(t *testing.T, excluded map[string]string, adapted map[string]struct{ from, to, why string }) string {
	var only map[string]bool
	if g := os.Getenv("IMAPTEST_GROUPS"); g != "" {
		only = map[string]bool{}
		for _, name := range strings.Split(g, ",") {
			only[strings.TrimSpace(name)] = true
		}
	}
	t.Helper()
	src := filepath.Join(filepath.Dir(filepath.Dir(imaptest(t))), "share", "imaptest", "tests")
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".mbox")
		if e.IsDir() || excluded[name] != "" || (only != nil && !only[name] && name != "default") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := adapted[e.Name()]; ok {
			if !bytes.Contains(b, []byte(a.from)) {
				t.Fatalf("imaptest group %s no longer has %s: review imaptestAdapted", e.Name(), a.from)
			}
			b = bytes.ReplaceAll(b, []byte(a.from), []byte(a.to))
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

var imaptestUsers = []testdovecot.User{{Name: "alice", Password: "alicepass"}, {Name: "tester", Password: "testerpass"},
	{Name: "stress", Password: "stresspass"}}

// transparentTargets are Dovecot and Postern in front of it with a policy that changes no clean message:
// imaptest compares what it reads with what it appended.
func transparentTargets(t *testing.T, dc *testdovecot.Dovecot) []target {
	return []target{{name: "dovecot", addr: dc.IMAP}, proxyTarget(t, dc.IMAP, false)}
}

var groupsLine = regexp.MustCompile(`(\d+) test groups: (\d+) failed, (\d+) skipped`)

// TestImaptestScripted runs imaptest's scripted compliance tests: every group passes, straight to Dovecot and
// through Postern (groups whose capabilities Postern does not advertise are skipped by imaptest).
func TestImaptestScripted(t *testing.T) {
	bin := imaptest(t)
	dc := testdovecot.Start(t, testdovecot.Options{Users: imaptestUsers})
	eachTarget(t, transparentTargets(t, dc), func(t *testing.T, tg target) {
		excluded, adapted := map[string]string{}, imaptestAdapted
		if tg.name == "dovecot" {
			adapted = nil
		} else if os.Getenv("IMAPTEST_ALL") == "" && os.Getenv("IMAPTEST_GROUPS") == "" {
			excluded = imaptestExcluded
		}
		tests := scriptedTests(t, excluded, adapted)
		host, port := hostPort(tg.addr)
		out, err := run(t, 5*time.Minute, bin, "host="+host, "port="+port, "user=tester", "pass=testerpass", "test="+tests)
		m := groupsLine.FindStringSubmatch(out)
		if err != nil || m == nil || m[2] != "0" {
			t.Fatalf("imaptest scripted through %s: %v\n%s", tg.name, err, out)
		}
		t.Logf("%s: %s", tg.name, strings.TrimSpace(lastLines(out, 3)))
		for name, why := range excluded {
			t.Logf("excluded group %s: %s", name, why)
		}
		for name, a := range adapted {
			if g := os.Getenv("IMAPTEST_GROUPS"); g == "" || slices.Contains(strings.Split(g, ","), name) {
				t.Logf("adapted group %s: %s", name, a.why)
			}
		}
	})
}

// stressResult is what one imaptest stress run reports.
type stressResult struct {
	commands int // the sum of the Totals row
	secs     int
	stderr   string
	stdout   string
}

// stress runs imaptest's stress mode against addr with clients for secs seconds, user stress.
func stress(t testing.TB, addr string, clients, secs int, extra ...string) stressResult {
	t.Helper()
	bin := imaptest(t)
	mbox := filepath.Join(t.TempDir(), "stress.mbox")
	gen := filepath.Join(testplugins.Root(), "test", "imapinterop", "imaptest", "gen-mbox.py")
	if out, err := exec.Command("python3", gen, mbox, "100").CombinedOutput(); err != nil {
		t.Fatalf("gen-mbox.py: %v\n%s", err, out)
	}
	host, port := hostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+60)*time.Second)
	defer cancel()
	args := []string{"host=" + host, "port=" + port, "user=stress", "pass=stresspass", "mbox=" + mbox,
		"clients=" + strconv.Itoa(clients), "secs=" + strconv.Itoa(secs)}
	cmd := exec.CommandContext(ctx, bin, append(args, extra...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("imaptest stress: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	r := stressResult{secs: secs, stderr: stderr.String(), stdout: stdout.String()}
	r.commands = totals(stdout.String())
	return r
}

// totals sums imaptest's Totals: the first row after "Totals:" made of numbers only (the column names and the
// percentage rows of the profile come before it).
func totals(out string) int {
	_, rest, ok := strings.Cut(out, "Totals:")
	if !ok {
		return 0
	}
	for _, row := range strings.Split(rest, "\n") {
		fields := strings.Fields(row)
		n, all := 0, len(fields) > 0
		for _, f := range fields {
			v, err := strconv.Atoi(f)
			all = all && err == nil
			n += v
		}
		if all {
			return n
		}
	}
	return 0
}

// TestImaptestStress runs imaptest's stress mode, 10 clients: 60 s through Postern, 10 s straight to Dovecot (the
// check of the harness itself), with imaptest's default command mix ("full") and without STATUS ("nostatus", the
// mix of BenchmarkIMAPStress).
// No errors on stderr, and commands were run.
func TestImaptestStress(t *testing.T) {
	if testing.Short() {
		t.Skip("imaptest stress runs for minutes")
	}
	dc := testdovecot.Start(t, testdovecot.Options{Users: imaptestUsers})
	eachTarget(t, transparentTargets(t, dc), func(t *testing.T, tg target) {
		for _, profile := range []string{"full", "nostatus"} {
			t.Run(profile, func(t *testing.T) {
				secs := 10
				if tg.name != "dovecot" {
					secs = 60
				}
				var extra []string
				if profile == "nostatus" {
					extra = append(extra, "status=0")
				}
				r := stress(t, tg.addr, 10, secs, extra...)
				if strings.TrimSpace(r.stderr) != "" || r.commands == 0 {
					t.Fatalf("imaptest stress through %s: %d commands, errors:\n%s\nstdout:\n%s", tg.name, r.commands,
						lastLines(r.stderr, 20), lastLines(r.stdout, 20))
				}
				t.Logf("%s: %d commands in %d s (%.0f/s), 10 clients", tg.name, r.commands, r.secs, float64(r.commands)/float64(r.secs))
			})
		}
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
