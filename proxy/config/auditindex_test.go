package config

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestAuditIndex(t *testing.T) {
	t.Run("sqlite defaults to state_dir", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"main.hcl": "state_dir = \"state\"\naudit {\n  path = \"audit.log\"\n" +
			"  index {\n    driver = \"sqlite\"\n  }\n}\n"})
		cfg, err := Load(filepath.Join(dir, "main.hcl"))
		if err != nil {
			t.Fatal(err)
		}
		ix := cfg.Audit.Index
		if ix == nil || ix.Driver != "sqlite" || ix.Path != filepath.Join(dir, "state", "audit-index.db") || ix.Node != "" {
			t.Fatalf("Index = %+v", ix)
		}
	})
	t.Run("postgres with a node", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"main.hcl": "audit {\n  path = \"audit.log\"\n  index {\n" +
			"    driver = \"postgres\"\n    dsn = \"postgres://postern@127.0.0.1:5432/audit\"\n    node = \"mx1\"\n  }\n}\n"})
		cfg, err := Load(filepath.Join(dir, "main.hcl"))
		if err != nil {
			t.Fatal(err)
		}
		ix := cfg.Audit.Index
		if ix == nil || ix.Driver != "postgres" || ix.DSN != "postgres://postern@127.0.0.1:5432/audit" || ix.Node != "mx1" {
			t.Fatalf("Index = %+v", ix)
		}
	})
	t.Run("no audit index without the block", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"main.hcl": "audit {\n  path = \"audit.log\"\n}\n"})
		cfg, err := Load(filepath.Join(dir, "main.hcl"))
		if err != nil || cfg.Audit.Index != nil {
			t.Fatalf("Index = %+v, %v", cfg.Audit.Index, err)
		}
	})
	for _, c := range []struct {
		name, index string
		want        []string
	}{
		{"unknown driver", `driver = "mysql"`, []string{"main.hcl:4:14: Invalid driver"}},
		{"no driver", `node = "mx1"`, []string{"main.hcl:3:9: Missing required argument"}},
		{"sqlite without state_dir or path", `driver = "sqlite"`, []string{"main.hcl:3:3: No place for the audit index"}},
		{"sqlite with a dsn", "driver = \"sqlite\"\n    path = \"ix.db\"\n    dsn = \"x\"", []string{"main.hcl:6:5: Unexpected dsn"}},
		{"postgres without dsn", `driver = "postgres"`, []string{"main.hcl:3:3: Missing dsn"}},
		{"postgres with a path", "driver = \"postgres\"\n    dsn = \"x\"\n    path = \"ix.db\"", []string{"main.hcl:6:5: Unexpected path"}},
		{"bad node", "driver = \"postgres\"\n    dsn = \"x\"\n    node = \"a b\"", []string{"main.hcl:6:12: Invalid node"}},
		{"two index blocks", "driver = \"sqlite\"\n    path = \"a.db\"\n  }\n  index {\n    driver = \"sqlite\"\n    path = \"b.db\"",
			[]string{"main.hcl:7:3: Duplicate index block"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"main.hcl": "audit {\n  path = \"audit.log\"\n  index {\n    " + c.index + "\n  }\n}\n"})
			if got := loadErrors(t, dir); !slices.Equal(got, c.want) {
				t.Fatalf("errors %q, want %q", got, c.want)
			}
		})
	}
}
