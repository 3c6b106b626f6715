package listener

import "fmt"

// TLSMode says how a listener offers TLS to its clients.
type TLSMode string

// The client-side TLS modes, the same for every protocol.
const (
	TLSNone     TLSMode = "none"     // plain text only
	TLSStartTLS TLSMode = "starttls" // plain text with the protocol's upgrade (SMTP STARTTLS, POP3 STLS)
	TLSImplicit TLSMode = "implicit" // TLS from the first byte (ports 465, 995)
)

// TLS is the client-side TLS configuration of a listener.
type TLS struct {
	// Mode is none, starttls or implicit. The zero value is starttls when CertFile is set, none otherwise.
	Mode TLSMode
	// CertFile and KeyFile are PEM files. They are read when the server starts and again when its certificate
	// is reloaded, so a renewed certificate is picked up without restarting (existing connections keep theirs).
	CertFile, KeyFile string
}

// WithDefaults fills in the mode and checks that a mode with TLS has its certificate and key.
func (t TLS) WithDefaults() (TLS, error) {
	switch t.Mode {
	case "":
		t.Mode = TLSNone
		if t.CertFile != "" {
			t.Mode = TLSStartTLS
		}
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		return t, fmt.Errorf("tls mode %q: want none, starttls or implicit", t.Mode)
	}
	if t.Mode != TLSNone && (t.CertFile == "" || t.KeyFile == "") {
		return t, fmt.Errorf("tls mode %s needs cert and key", t.Mode)
	}
	return t, nil
}
