package listener

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TestCertificateName is the subject of the certificates EnsureTestCertificate makes: a client that shows it
// tells its user that this is not a certificate to trust.
const TestCertificateName = "Postern test certificate - NOT FOR PRODUCTION"

// testCertLifetime is how long a test certificate is valid; an expired one is made again.
const testCertLifetime = 365 * 24 * time.Hour

// EnsureTestCertificate makes a self-signed certificate and its key, for localhost, 127.0.0.1, ::1 and hosts, in
// certFile and keyFile (the key with mode 0600), unless a usable pair is already there: one that loads and has
// not expired. It reports whether it made a new one. The pair lets a demonstration or a test offer TLS without a
// certificate authority; no client can verify it.
func EnsureTestCertificate(certFile, keyFile string, hosts ...string) (made bool, err error) {
	if pair, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil && pair.Leaf != nil &&
		time.Now().Add(24*time.Hour).Before(pair.Leaf.NotAfter) {
		return false, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Present but unusable: say so rather than overwrite what someone may have put there.
		if _, serr := os.Stat(certFile); serr == nil {
			return false, fmt.Errorf("test certificate %s: %w (remove it to have a new one made)", certFile, err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return false, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: TestCertificateName, Organization: []string{"Postern (testing only)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(testCertLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && h != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return false, fmt.Errorf("making the test certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, err
	}
	for _, f := range []struct {
		path, kind string
		der        []byte
		mode       os.FileMode
	}{{keyFile, "PRIVATE KEY", keyDER, 0o600}, {certFile, "CERTIFICATE", der, 0o644}} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
			return false, err
		}
		if err := writeFileAtomic(f.path, pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der}), f.mode); err != nil {
			return false, fmt.Errorf("writing the test certificate: %w", err)
		}
	}
	return true, nil
}

// writeFileAtomic writes a file under a temporary name and renames it, so that a reader never sees half of it.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
