package main

import (
	"net/mail"
	"slices"
	"strings"
	"testing"
)

func TestFromDomains(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  []string
	}{
		{"alice@Example.COM", []string{"example.com"}},
		{"Alice <alice@example.com>", []string{"example.com"}},
		{`"ceo@example.com" <mallory@attacker.test>`, []string{"attacker.test"}}, // display name lies
		{"a@one.test, b@two.test", []string{"one.test", "two.test"}},
		{"=?utf-8?q?Alice?= <alice@example.com>", []string{"example.com"}},
		{"broken <<mallory@attacker.test>", []string{"attacker.test"}},   // unparsable, fallback
		{"mallory@attacker.test (Example IT", []string{"attacker.test"}}, // unclosed comment
		{"undisclosed", nil},
		{"", nil},
		{"x@evil.test Trust me <x@evil test>", []string{"evil"}}, // "evil test" is no domain; the fallback digs on
	} {
		if got := fromDomains(tc.value); !slices.Equal(got, tc.want) {
			t.Errorf("fromDomains(%q) = %q, want %q", tc.value, got, tc.want)
		}
	}
}

func TestIsInternal(t *testing.T) {
	internal := []string{"example.com", "example.org"}
	for d, want := range map[string]bool{
		"example.com":               true,
		"mail.example.com":          true,
		"example.org":               true,
		"badexample.com":            false,
		"example.com.attacker.test": false,
		"example.co":                false,
		"":                          false,
		"xn--exmple-cua.com":        false,
		"deep.sub.example.org":      true,
		"example.com-attacker.test": false,
		"attacker.test":             false,
	} {
		if got := isInternal(d, internal); got != want {
			t.Errorf("isInternal(%q) = %v, want %v", d, got, want)
		}
	}
}

func TestDecide(t *testing.T) {
	internal := []string{"example.com"}
	for _, tc := range []struct {
		name        string
		internal    []string
		mailFrom    string
		hasMailFrom bool
		from        []string
		rcpts       []string
		external    bool
		domain      string
	}{
		{"internal both", internal, "a@example.com", true, []string{"example.com"}, nil, false, "example.com"},
		{"external both", internal, "b@other.test", true, []string{"other.test"}, nil, true, "other.test"},
		{"spoofed From", internal, "b@other.test", true, []string{"example.com"}, nil, true, "other.test"},
		{"external From, internal envelope", internal, "list@example.com", true, []string{"other.test"}, nil, true, "other.test"},
		{"null sender, internal From", internal, "", true, []string{"example.com"}, nil, false, "example.com"},
		{"null sender, external From", internal, "", true, []string{"other.test"}, nil, true, "other.test"},
		{"no From", internal, "a@example.com", true, nil, nil, true, "example.com"},
		{"subdomain", internal, "a@mail.example.com", true, []string{"hr.example.com"}, nil, false, "hr.example.com"},
		{"rcpt domains: same", nil, "a@corp.test", true, []string{"corp.test"}, []string{"bob@corp.test"}, false, "corp.test"},
		{"rcpt domains: other", nil, "a@other.test", true, []string{"other.test"}, []string{"bob@corp.test"}, true, "other.test"},
		{"no domains at all", nil, "", false, []string{"corp.test"}, []string{"bob"}, true, "corp.test"},
		{"one of two From outside", internal, "a@example.com", true, []string{"example.com", "other.test"}, nil, true, "other.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := decide(tc.internal, tc.mailFrom, tc.hasMailFrom, tc.from, tc.rcpts)
			if v.External != tc.external || v.Domain != tc.domain {
				t.Errorf("decide = %+v, want external=%v domain=%q", v, tc.external, tc.domain)
			}
			if v.Why == "" {
				t.Error("decide gave no reason")
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	s, err := parseConfig([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.subjectPrefix != defaultSubjectPrefix || s.header != defaultHeader || s.bannerText != defaultBannerText ||
		s.bannerHTML != defaultBannerHTML || len(s.internal) != 0 || s.tagOutbound {
		t.Errorf("defaults = %+v", s)
	}
	s, err = parseConfig([]byte(`{"internal_domains":["Example.COM."],"subject_prefix":"","banner_html":"","header":"X-Ext"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.internal, []string{"example.com"}) || s.subjectPrefix != "" || s.bannerHTML != "" ||
		s.header != "X-Ext" || s.bannerText != defaultBannerText {
		t.Errorf("parsed = %+v", s)
	}
	for cfg, want := range map[string]string{
		`{"internal_domain":["example.com"]}`:   `unknown key "internal_domain" (known keys: banner_html, banner_text, header, internal_domains,`,
		`{"internal_domains":["@example.com"]}`: "not a domain",
		`{"internal_domains":["exa mple.com"]}`: "not a domain",
		`{"internal_domains":[".example.com"]}`: "not a domain",
		`{"subject_prefix":"a\nb"}`:             "one line",
		`{"header":"X-Bad:"}`:                   "not allowed",
		`{"header":"X Bad"}`:                    "not allowed",
		`{"internal_domains":"example.com"}`:    "internal_domains: want a list, got a string",
	} {
		_, err := parseConfig([]byte(cfg))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseConfig(%s) error = %v, want it to mention %q", cfg, err, want)
		}
	}
}

func TestExpand(t *testing.T) {
	if got := expand("from {domain}.", "a<b>.test", true); got != "from a&lt;b&gt;.test." {
		t.Errorf("HTML expand = %q", got)
	}
	if got := expand("from {domain}.", "a.test", false); got != "from a.test." {
		t.Errorf("text expand = %q", got)
	}
	if got := expand("from {domain}.", "", false); got != "from unknown sender." {
		t.Errorf("empty domain expand = %q", got)
	}
}

// TestSimpleMailboxAgreesWithNetMail checks the fast path of fromDomains against net/mail: wherever
// simpleMailbox reads a value, net/mail reads exactly one mailbox with the same address.
func TestSimpleMailboxAgreesWithNetMail(t *testing.T) {
	names := []string{"", "Alice", "Partner Sales", "A1 B2  C3", "Bob-Smith", "Dr. Who", `"Q"`, "=?utf-8?q?A?=", "a,b", "x(y)", "<"}
	addrs := []string{"a@b", "alice@example.com", "first.last+tag@mail.example.co.uk", "a_b-c@x-y.test", ".a@b", "a.@b",
		"a..b@c", "a@b..c", "a@@b", "@b", "a@", "a b@c", `"a"@b`, "a@[1.2.3.4]", "a\\b@c", "ä@b.test"}
	var read int
	for _, n := range names {
		for _, a := range addrs {
			for _, v := range []string{a, n + " <" + a + ">", n + "<" + a + ">", " " + n + " <" + a + "> ", "<" + a + ">"} {
				got, ok := simpleMailbox(v)
				if !ok {
					continue
				}
				read++
				list, err := mail.ParseAddressList(v)
				if err != nil || len(list) != 1 || list[0].Address != got {
					t.Errorf("simpleMailbox(%q) = %q; net/mail: %v, %v", v, got, list, err)
				}
			}
		}
	}
	if read < 20 {
		t.Errorf("the fast path read only %d of the values", read)
	}
}
