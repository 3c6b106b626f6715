package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testplugins"
)

// hclBlocks returns the ```hcl code blocks of docs/CONFIG.md.
func hclBlocks(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(testplugins.Root(), "docs", "CONFIG.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```hcl\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		out = append(out, m[1])
	}
	if len(out) < 3 {
		t.Fatalf("docs/CONFIG.md has %d hcl blocks", len(out))
	}
	return out
}

// selfSigned writes a certificate and key for the TLS blocks of examples.
func selfSigned(t *testing.T, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"mx.example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDocsCompleteExample loads the complete example of docs/CONFIG.md, with its absolute paths moved into a
// temporary directory, so that the reference never shows a configuration Postern refuses.
func TestDocsCompleteExample(t *testing.T) {
	example := hclBlocks(t)[0]
	dir := t.TempDir()
	sum := sha256.Sum256(emptyModule)
	for _, name := range []string{"eicar", "attachment-guard", "header-sanity", "dlp"} {
		if err := os.WriteFile(filepath.Join(dir, name+".wasm"), emptyModule, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	selfSigned(t, filepath.Join(dir, "mx.crt"), filepath.Join(dir, "mx.key"))
	src := strings.NewReplacer("/usr/lib/postern/plugins/", dir+"/", "/etc/postern/tls/", dir+"/",
		"/var/lib/postern", dir+"/state", "/var/log/postern", dir+"/log").Replace(example)
	src = regexp.MustCompile(`sha256 = "[0-9a-f]{64}"`).ReplaceAllString(src, `sha256 = "`+hex.EncodeToString(sum[:])+`"`)
	path := filepath.Join(dir, "postern.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("the complete example does not load:\n%v", err)
	}
	if cfg.Summary() != "1 listener, 4 plugins, 3 policies" || len(cfg.Warnings) != 0 {
		t.Errorf("%s, warnings %v", cfg.Summary(), cfg.Warnings)
	}
}

// TestDocsWhenExamples loads every `when = ...` line of the documentation's examples.
func TestDocsWhenExamples(t *testing.T) {
	var exprs []string
	for _, block := range hclBlocks(t) {
		for _, line := range strings.Split(block, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "when"); ok {
				if e, ok := strings.CutPrefix(strings.TrimSpace(rest), "="); ok {
					exprs = append(exprs, strings.TrimSpace(e))
				}
			}
		}
	}
	if len(exprs) < 7 {
		t.Fatalf("found %d when examples", len(exprs))
	}
	_, conds := conditions(t, exprs...)
	for i, c := range conds {
		if c.fast == nil {
			t.Logf("evaluated by hcl: %s", exprs[i])
		}
	}
}
