package listener

import (
	"strings"
	"testing"
)

func TestTLSWithDefaults(t *testing.T) {
	for _, tc := range []struct {
		in   TLS
		want TLSMode
		err  string
	}{
		{TLS{}, TLSNone, ""},
		{TLS{CertFile: "c", KeyFile: "k"}, TLSStartTLS, ""},
		{TLS{Mode: TLSImplicit, CertFile: "c", KeyFile: "k"}, TLSImplicit, ""},
		{TLS{Mode: TLSStartTLS, CertFile: "c"}, "", "needs cert and key"},
		{TLS{Mode: "ssl"}, "", `tls mode "ssl": want none, starttls or implicit`},
	} {
		got, err := tc.in.WithDefaults()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.Mode != tc.want {
			t.Errorf("%+v: %v %v, want mode %s", tc.in, got.Mode, err, tc.want)
		}
	}
}
