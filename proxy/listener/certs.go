package listener

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// Certificates holds a listener's certificate so that it can be replaced while connections are being served:
// new handshakes use the pair loaded last, existing connections keep theirs.
type Certificates struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadCertificates reads a PEM certificate and key.
func LoadCertificates(certFile, keyFile string) (*Certificates, error) {
	c := &Certificates{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again; on error the pair in use stays.
func (c *Certificates) Reload() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("loading certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&pair)
	return nil
}

// CertFile is the certificate's file name.
func (c *Certificates) CertFile() string { return c.certFile }

// GetCertificate is for tls.Config.GetCertificate.
func (c *Certificates) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// TLSConfig is the server configuration for clients: TLS 1.2 at least, the current certificate.
func (c *Certificates) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate}
}
