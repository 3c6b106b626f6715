package main

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestLuhn(t *testing.T) {
	for _, tc := range []struct {
		digits string
		want   bool
	}{
		{"4111111111111111", true},
		{"4111111111111112", false},
		{"79927398713", true},
		{"79927398710", false},
		{"378282246310005", true},
		{"0", true},
	} {
		if got := luhn(tc.digits); got != tc.want {
			t.Errorf("luhn(%s) = %v, want %v", tc.digits, got, tc.want)
		}
	}
}

func TestValidCard(t *testing.T) {
	valid := []string{
		"4111111111111111",    // Visa
		"4222222222222",       // Visa, 13 digits
		"4111111111111111110", // Visa, 19 digits (Luhn-valid)
		"5555555555554444",    // Mastercard 5x
		"2223003122003222",    // Mastercard 2-series
		"378282246310005",     // American Express
		"371449635398431",     // American Express
		"6011111111111117",    // Discover
		"6221260000000000",    // Discover/UnionPay range
		"30569309025904",      // Diners Club, 14 digits
		"3530111333300000",    // JCB
		"6200000000000005",    // UnionPay
		"2200000000000004",    // Mir
	}
	for _, d := range valid {
		if !luhn(d) {
			t.Fatalf("test data %s fails Luhn", d)
		}
		if !validCard(d) {
			t.Errorf("validCard(%s) = false, want true", d)
		}
	}
	invalid := map[string]string{
		"4111111111111112":     "Luhn fails",
		"0000000000000000":     "one repeated digit passes Luhn",
		"1234567812345670":     "Luhn-valid but no issuer starts with 1",
		"3782822463100050":     "Amex prefix with 16 digits",
		"55555555555544440":    "Mastercard prefix with 17 digits",
		"411111111111":         "12 digits",
		"41111111111111111113": "20 digits",
		"9111111111111110":     "Luhn-valid, no issuer starts with 9",
		"4111 1111 1111 1111":  "separators are not digits",
	}
	for d, why := range invalid {
		if validCard(d) {
			t.Errorf("validCard(%s) = true, want false (%s)", d, why)
		}
	}
}

func TestCardsInRun(t *testing.T) {
	for _, tc := range []struct {
		run  string
		want []string
	}{
		{"4111111111111111", []string{"4111111111111111"}},
		{"4111 1111 1111 1111", []string{"4111111111111111"}},
		{"4111-1111-1111-1111", []string{"4111111111111111"}},
		{"3782 822463 10005", []string{"378282246310005"}},         // Amex 4-6-5
		{"4111 1111 1111 1111 12", []string{"4111111111111111"}},   // trailing quantity
		{"2024 4111 1111 1111 1111", []string{"4111111111111111"}}, // leading year
		{"4111111111111111 5555555555554444", []string{"4111111111111111", "5555555555554444"}},
		{"4111 1111 1111 1111 5555 5555 5555 4444", []string{"4111111111111111", "5555555555554444"}},
		{"4111 1111 1111 1112", nil},                                 // Luhn fails
		{"41111111111111111111111111111111", nil},                    // 32 digits: not a card, not searched inside
		{"0049 30 1234567 4111", nil},                                // phone-like grouping
		{"12 34 56 78 90 12 34 56", nil},                             // digit soup in pairs
		{"4111 1111 1111 1", nil},                                    // 13 digits, Luhn fails
		{"4222 2222 2222 2", []string{"4222222222222"}},              // 13-digit Visa 4-4-4-1
		{"4111 1111 1111 1111 110", []string{"4111111111111111110"}}, // 19 digits 4-4-4-4-3
		{"41 1111 1111 1111 11", nil},                                // first group not 4 digits
	} {
		got := cardsInRun(tc.run)
		if !slices.Equal(got, tc.want) {
			t.Errorf("cardsInRun(%q) = %q, want %q", tc.run, got, tc.want)
		}
	}
}

func TestIBAN(t *testing.T) {
	valid := []string{
		"DE89370400440532013000",
		"GB82WEST12345698765432",
		"FR1420041010050500013M02606",
		"NL91ABNA0417164300",
		"BE68539007547034",
		"CH9300762011623852957",
		"NO9386011117947",
		"MT84MALT011000012345MTLCAST001S",
	}
	for _, s := range valid {
		if !validIBAN(s) {
			t.Errorf("validIBAN(%s) = false, want true", s)
		}
	}
	invalid := map[string]string{
		"DE89370400440532013001":  "check digits wrong",
		"DE8937040044053201300":   "too short for DE",
		"DE893704004405320130000": "too long for DE",
		"XX89370400440532013000":  "no such country",
		"DE89370400440532O13000":  "letter O instead of zero changes the checksum",
		"de89370400440532013000":  "lower case is not canonical",
	}
	for s, why := range invalid {
		if validIBAN(s) {
			t.Errorf("validIBAN(%s) = true, want false (%s)", s, why)
		}
	}
}

func TestIBANInRun(t *testing.T) {
	for _, tc := range []struct{ run, want string }{
		{"DE89370400440532013000", "DE89370400440532013000"},
		{"DE89 3704 0044 0532 0130 00", "DE89370400440532013000"},
		{"DE89 3704 0044 0532 0130 00 IS", "DE89370400440532013000"}, // grouped pattern ran into a word
		{"BE68 5390 0754 7034 THIS IS", "BE68539007547034"},          // length a multiple of four
		{"DE8937040044053201300012", ""},                             // contiguous and too long
		{"DE89 3704 0044 0532 0130 0012", ""},                        // ends inside a group
		{"DE89 3704 0044 0532 0130 01", ""},                          // checksum
		{"ZZ89 3704 0044 0532 0130 00", ""},                          // unknown country
		{"DE89", ""},
	} {
		if got := ibanInRun(tc.run); got != tc.want {
			t.Errorf("ibanInRun(%q) = %q, want %q", tc.run, got, tc.want)
		}
	}
}

// TestPatterns checks the RE2 patterns handed to the host (compiled here by the same regexp package the host
// uses) find the runs the checks expect, and nothing glued to letters.
func TestPatterns(t *testing.T) {
	lines := strings.Split(strings.TrimSuffix(patternSet, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("patternSet has %d lines, want 3", len(lines))
	}
	res := make([]*regexp.Regexp, len(lines))
	for i, l := range lines {
		res[i] = regexp.MustCompile(l)
	}
	find := func(i int, s string) []string { return res[i].FindAllString(s, -1) }
	text := "Card 4111 1111 1111 1111, exp 12/27. Ref ID4111111111111111X. Order 5555-5555-5555-4444.\n" +
		"Pay to DE89 3704 0044 0532 0130 00 IS fine, or GB82WEST12345698765432.\n" +
		"Order 2024-03-11-00042, call +49 30 1234 5678 90, ID 12345678901234567890123, Amex 3782 822463 10005.\n" +
		"Two: 4111111111111111 5555555555554444; grouped 4111 1111 1111 1111 5555 5555 5555 4444 12."
	want := []string{"4111 1111 1111 1111", "5555-5555-5555-4444", "3704 0044 0532 0130 00", "3782 822463 10005",
		"4111111111111111", "5555555555554444", "4111 1111 1111 1111 5555 5555 5555 4444 12"}
	if got := find(0, text); !slices.Equal(got, want) {
		t.Errorf("card runs = %q, want %q", got, want)
	}
	// ID4111111111111111X is IBAN-shaped; ibanInRun rejects it (ID is not an IBAN country).
	if got, want := find(1, text), []string{"ID4111111111111111X", "GB82WEST12345698765432"}; !slices.Equal(got, want) {
		t.Errorf("contiguous IBAN runs = %q, want %q", got, want)
	}
	if got, want := find(2, text), []string{"DE89 3704 0044 0532 0130 00"}; !slices.Equal(got, want) {
		t.Errorf("grouped IBAN runs = %q, want %q", got, want)
	}
	// An IBAN whose length is a multiple of four runs into the next short word; ibanInRun cuts it.
	if got, want := find(2, "BE68 5390 0754 7034 THIS IS"), []string{"BE68 5390 0754 7034 THIS IS"}; !slices.Equal(got, want) {
		t.Errorf("grouped IBAN runs = %q, want %q", got, want)
	}
	// A 1 MiB digit string is no card and yields no candidate; a 1 MiB run of groups yields bounded ones.
	if m := res[0].FindAllString(strings.Repeat("1", 1<<20), 3); m != nil {
		t.Errorf("a long digit string gave candidates %.40q", m)
	}
	for _, m := range res[0].FindAllString(strings.Repeat("1111 ", 1<<18), 3) {
		if len(m) > 60 {
			t.Fatalf("card run of %d bytes, want at most 60", len(m))
		}
	}
}

func TestAnalyze(t *testing.T) {
	text := "Card 4111 1111 1111 1111 and DE89 3704 0044 0532 0130 00 and 1234 5678 9012 3456."
	var ms []match
	for i, l := range strings.Split(strings.TrimSuffix(patternSet, "\n"), "\n") {
		for _, loc := range regexp.MustCompile(l).FindAllStringIndex(text, -1) {
			ms = append(ms, match{Pattern: i, Start: int64(loc[0]), End: int64(loc[1]), Text: text[loc[0]:loc[1]]})
		}
	}
	got := analyze(ms)
	want := []finding{{kindIBAN, "DE89370400440532013000"}, {kindCard, "4111111111111111"}}
	if !slices.Equal(got, want) {
		t.Errorf("analyze = %v, want %v", got, want)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"4111111111111111":       "4111********1111",
		"378282246310005":        "3782*******0005",
		"DE89370400440532013000": "DE89**************3000",
		"12345678":               "********",
		"":                       "",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%s) = %s, want %s", in, got, want)
		}
	}
}
