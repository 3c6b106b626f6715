package imapproxy

import (
	"bufio"
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

func TestParseAddressList(t *testing.T) {
	start := func(name string) imap.Address { return imap.Address{Mailbox: name} }
	end := imap.Address{}
	addr := func(name, mailbox, host string) imap.Address {
		return imap.Address{Name: name, Mailbox: mailbox, Host: host}
	}
	for _, tc := range []struct {
		in   string
		want []imap.Address
	}{
		{"", nil},
		{"From Real <fromuser@fromdomain.org>", []imap.Address{addr("From Real", "fromuser", "fromdomain.org")}},
		{`"Doe, John" <j@x.test>, k@y.test`, []imap.Address{addr("Doe, John", "j", "x.test"), addr("", "k", "y.test")}},
		// The old style: the comment is the display name.
		{"user@domain (Real Name)", []imap.Address{addr("Real Name", "user", "domain")}},
		// imaptest fetch-envelope: groups become RFC 3501 §7.4.2 markers.
		{"group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;", []imap.Address{start("group"), addr("", "g1", "d1.org"),
			addr("", "g2", "d2.org"), end, start("group2"), addr("", "g3", "d3.org"), end}},
		{"group:;, group2: (foo) ;", []imap.Address{start("group"), end, start("group2"), end}},
		{"undisclosed-recipients:;", []imap.Address{start("undisclosed-recipients"), end}},
		{"team: a@x.test", []imap.Address{start("team"), addr("", "a", "x.test"), end}}, // unterminated
		// An obsolete source route is read and dropped.
		{"<@route:user@domain>", []imap.Address{addr("", "user", "domain")}},
		{"<@a.test,@b.test:user@domain>", []imap.Address{addr("", "user", "domain")}},
		// One unreadable address does not lose the others; a missing domain is not a group start.
		{"bad <>, ok@x.test", []imap.Address{addr("", "ok", "x.test")}},
		{"undisclosed, ok@x.test", []imap.Address{addr("", "undisclosed", missingDomain), addr("", "ok", "x.test")}},
		{"first.last@sub.x.test", []imap.Address{addr("", "first.last", "sub.x.test")}},
		{`"quoted local"@x.test`, []imap.Address{addr("", "quoted local", "x.test")}},
		{"=?utf-8?q?J=C3=B6rg?= <j@x.test>", []imap.Address{addr("Jörg", "j", "x.test")}},
		{"user@[192.0.2.1]", []imap.Address{addr("", "user", "[192.0.2.1]")}},
	} {
		if got := parseAddressList(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseAddressList(%q)\n got %#v\nwant %#v", tc.in, got, tc.want)
		}
	}
}

// TestExtractEnvelopeAsGoIMAP: besides the address lists, the envelope is go-imap's.
func TestExtractEnvelopeAsGoIMAP(t *testing.T) {
	raw := "Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nFrom: A <a@x.test>\r\n" +
		"To: b@y.test\r\nIn-Reply-To: <p@x.test> <q@x.test>\r\nMessage-ID: <m@x.test>\r\n\r\n"
	h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := extractEnvelope(h), imapserver.ExtractEnvelope(h); !reflect.DeepEqual(got, want) {
		t.Errorf("envelope\n got %#v\nwant %#v", got, want)
	}
}
