package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAdminReview(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": "audit {\n  path = \"a.log\"\n}\nadmin {\n  address = \"127.0.0.1:8025\"\n  review {\n" +
		"    users_file = \"reviewers\"\n    session_idle = \"10m\"\n  }\n}\n"})
	cfg, err := Load(filepath.Join(dir, "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Admin.Review
	if r == nil || r.UsersFile != filepath.Join(dir, "reviewers") || r.SecureCookies || r.SessionIdle != 10*time.Minute ||
		r.SessionMaxAge != 12*time.Hour || r.UsersFileRange.Start.Line != 7 {
		t.Fatalf("review %+v", r)
	}
	// Under TLS the cookies are Secure.
	dir = writeFiles(t, map[string]string{"main.hcl": "state_dir = \"s\"\naudit {\n  path = \"a.log\"\n}\nadmin {\n  address = \":8025\"\n" +
		"  tls {\n    test_certificate = true\n  }\n  review {\n    users_file = \"u\"\n  }\n}\n"})
	if cfg, err = Load(filepath.Join(dir, "main.hcl")); err != nil || !cfg.Admin.Review.SecureCookies {
		t.Fatalf("%v %+v", err, cfg)
	}

	for name, c := range map[string]struct{ src, want string }{
		"no users_file":     {"admin {\n  address = \"127.0.0.1:1\"\n  review {\n  }\n}\n", "main.hcl:3:10: Missing required argument"},
		"two review blocks": {"admin {\n  address = \"127.0.0.1:1\"\n  review {\n    users_file = \"a\"\n  }\n  review {\n    users_file = \"b\"\n  }\n}\n", "main.hcl:6:3: Duplicate review"},
		"bad idle":          {"admin {\n  address = \"127.0.0.1:1\"\n  review {\n    users_file = \"a\"\n    session_idle = \"1s\"\n  }\n}\n", "main.hcl:5:20: Invalid session_idle"},
		"no audit log":      {"admin {\n  address = \"127.0.0.1:1\"\n  review {\n    users_file = \"a\"\n  }\n}\n", "main.hcl:3:3: Reviewer pages without an audit log"},
		"unknown attribute": {"admin {\n  address = \"127.0.0.1:1\"\n  review {\n    users_file = \"a\"\n    user_file = \"b\"\n  }\n}\n", "main.hcl:5:5: Unsupported argument"},
		"not Secure under TLS": {"state_dir = \"s\"\nadmin {\n  address = \":1\"\n  tls {\n    test_certificate = true\n  }\n" +
			"  review {\n    users_file = \"a\"\n    secure_cookies = false\n  }\n}\n", "main.hcl:9:22: Session cookies not Secure under TLS"},
	} {
		dir := writeFiles(t, map[string]string{"main.hcl": c.src})
		_, err := Load(filepath.Join(dir, "main.hcl"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
