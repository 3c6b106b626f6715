package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// adduser runs `postern review adduser` with the password on standard input.
func adduser(t *testing.T, password string, args ...string) (int, string) {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"review", "adduser", "-password-stdin"}, args...)...)
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func TestReviewUsersCommands(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "sub", "reviewers")
	if code, out := adduser(t, "long enough", "-users", users, "rita", "-role", "reviewer"); code != 0 ||
		!strings.Contains(out, "rita is a reviewer in "+users) {
		t.Fatalf("adduser: %d %s", code, out)
	}
	if code, out := adduser(t, "long enough", "-users", users, "-role", "auditor", "ada"); code != 0 {
		t.Fatalf("adduser with flags first: %d %s", code, out)
	}
	for name, c := range map[string]struct {
		password string
		args     []string
		code     int
		want     string
	}{
		"bad role":       {"long enough", []string{"-users", users, "-role", "boss", "x"}, 2, `unknown role "boss"`},
		"bad name":       {"long enough", []string{"-users", users, "a b"}, 2, "user name"},
		"short password": {"short", []string{"-users", users, "bob"}, 1, "shorter than 8"},
		"no file":        {"long enough", []string{"bob"}, 1, "no users file"},
		"no name":        {"long enough", []string{"-users", users}, 2, "usage: postern review adduser"},
	} {
		if code, out := adduser(t, c.password, c.args...); code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%s: %d %q, want %d %q", name, code, out, c.code, c.want)
		}
	}
	fi, err := os.Stat(users)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("users file: %v %v", fi, err)
	}
	b, _ := os.ReadFile(users)
	if !strings.Contains(string(b), "rita:reviewer:$argon2id$v=19$m=65536,t=3,p=4$") || strings.Contains(string(b), "long enough") {
		t.Fatalf("users file:\n%s", b)
	}
	code, out, _ := postern(t, "", "review", "users", "-users", users)
	if code != 0 || !strings.Contains(out, "ada") || !strings.Contains(out, "reviewer") {
		t.Fatalf("users: %d %s", code, out)
	}
	if code, out, _ := postern(t, "", "review", "deluser", "-users", users, "ada"); code != 0 || !strings.Contains(out, "ada removed") {
		t.Fatalf("deluser: %d %s", code, out)
	}
	if code, _, errs := postern(t, "", "review", "deluser", "-users", users, "ada"); code != 1 || !strings.Contains(errs, "no user ada") {
		t.Fatalf("deluser twice: %d %s", code, errs)
	}
	if code, out, _ := postern(t, "", "review", "adduser", "-h"); code != 0 || !strings.Contains(out, "-role") {
		t.Fatalf("help: %d %s", code, out)
	}
}

// TestRunReviewConfigErrors: the reviewer pages refuse to start without an audit log and with a broken users
// file, naming the configuration's line and the users file's line.
func TestRunReviewConfigErrors(t *testing.T) {
	dir := exampleTree(t)
	path := filepath.Join(dir, "r.hcl")
	base := "state_dir = \"state\"\nlistener \"smtp\" \"in\" {\n  address = \"" + freePort(t) + "\"\n  upstream = \"embedded\"\n}\n"
	admin := "admin {\n  address = \"" + freePort(t) + "\"\n  review {\n    users_file = \"users\"\n  }\n}\n"
	os.WriteFile(path, []byte(base+admin), 0o644)
	for _, cmd := range []string{"check", "run"} {
		code, out, errs := postern(t, "", cmd, "-config", path)
		if code == 0 || !strings.Contains(out+errs, "r.hcl:8:3") || !strings.Contains(out+errs, "Reviewer pages without an audit log") {
			t.Fatalf("%s without audit: %d %s %s", cmd, code, out, errs)
		}
	}
	os.WriteFile(path, []byte(base+"audit {\n  path = \"state/audit.log\"\n}\n"+admin), 0o644)
	os.WriteFile(filepath.Join(dir, "users"), []byte("# reviewers\nrita:boss:x\n"), 0o600)
	code, _, errs := postern(t, "", "run", "-config", path)
	if code == 0 || !strings.Contains(errs, "r.hcl:12:18") || !strings.Contains(errs, filepath.Join(dir, "users")+`:2: unknown role "boss"`) {
		t.Fatalf("broken users file: %d %s", code, errs)
	}
}
