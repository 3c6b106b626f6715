package main

import (
	"strings"
)

// The host finds candidate runs with these RE2 patterns (patterns_compile / part_match, one per line: index 0 is
// cards, index 1 is IBANs); the guest then decides which runs hold real numbers. The patterns are deliberately
// loose and cheap, the checks in this file are strict.
//
// cardRunPattern matches the ways card numbers are written: 13 to 19 digits in one piece, or a group of four
// digits followed by two to eight groups of four to six and maybe a last short group, separated by single spaces
// or dashes (4-4-4-4, 4-6-5, 4-6-4, 4-4-4-1, 4-4-4-4-3, and runs of several cards or a card next to a year).
// Runs are never glued to letters or digits (\b), so a longer digit string is not searched inside: one in ten
// 16-digit windows of a long number passes Luhn. Dates, order and phone numbers ("2024-03-11-00042",
// "+49 30 1234 5678") do not match, which keeps the host's list for real candidates.
//
// The shared four leading digits are written once, outside the alternation: the host's scanner then filters
// candidate positions on a four-digit prefix, which makes the scan several times faster.
const cardRunPattern = `\b\d{4}(?:\d{9,15}|(?:[ -]\d{4,6}){2,8}(?:[ -]\d{1,3})?)\b`

// IBANs are written either in one piece or in groups of four separated by single spaces (the "print format"
// of ISO 13616), hence two patterns. The grouped one may run into a following word of at most four letters or
// digits ("... 0130 00 IS"); ibanInRun uses the country's length to find where the IBAN really ends.
const (
	ibanPattern        = `\b[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}\b`
	ibanGroupedPattern = `\b[A-Z]{2}[0-9]{2}(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?\b`
)

// patternSet is the text handed to patterns_compile. The line order gives the pattern indexes in matches:
// 0 is cards, 1 and 2 are IBANs.
const patternSet = cardRunPattern + "\n" + ibanPattern + "\n" + ibanGroupedPattern + "\n"

// match is one host-side pattern match: the pattern's index in patternSet, its byte range in the scanned
// content and its text.
type match struct {
	Pattern    int
	Start, End int64
	Text       string
}

// analyze turns the host's matches in one part into findings. IBANs are decided first, and a card candidate
// inside an IBAN's range is dropped: the digits of "DE89 3704 0044 0532 0130 00" also form a card-shaped run.
func analyze(matches []match) []finding {
	var out []finding
	var ibanRanges [][2]int64
	for _, m := range matches {
		if m.Pattern != 1 && m.Pattern != 2 {
			continue
		}
		if iban := ibanInRun(m.Text); iban != "" {
			out = append(out, finding{Kind: kindIBAN, Number: iban})
			ibanRanges = append(ibanRanges, [2]int64{m.Start, m.End})
		}
	}
next:
	for _, m := range matches {
		if m.Pattern != 0 {
			continue
		}
		for _, r := range ibanRanges {
			if m.Start < r[1] && r[0] < m.End {
				continue next
			}
		}
		for _, c := range cardsInRun(m.Text) {
			out = append(out, finding{Kind: kindCard, Number: c})
		}
	}
	return out
}

// kind is what a finding is.
type kind int

const (
	kindCard kind = iota
	kindIBAN
)

// String returns "card" or "iban", as used in tags and logs.
func (k kind) String() string {
	if k == kindIBAN {
		return "iban"
	}
	return "card"
}

// finding is one number found in a run: its kind and its canonical form (digits only for a card, capitals and
// digits for an IBAN). It never leaves the plugin except through redact.
type finding struct {
	Kind   kind
	Number string
}

// cardsInRun returns the payment card numbers in a run of digits with optional single space/dash separators,
// as matched by cardRunPattern.
//
// A run may hold more than a card ("4111 1111 1111 1111 12 pcs" or two cards side by side), so it is split at
// its separators into groups and, from left to right, the longest span of whole groups that forms a valid
// card is taken. Cards are written either without separators or in groups whose first group has four digits
// (4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3 ...), so a span of several groups must start with a 4-digit group and
// continue with groups of at most 6 digits; this keeps telephone numbers and similar digit soup out. A group
// longer than 19 digits is not a card and is not searched inside either: a sliding window over a long
// number would find a Luhn-valid 16-digit slice once in ten tries.
func cardsInRun(run string) []string {
	groups := splitGroups(run)
	var cards []string
	for i := 0; i < len(groups); {
		found := false
		// Longest first: 4111 1111 1111 1111 123 is a 19-digit candidate before it is a 16-digit one.
		for j := len(groups) - 1; j >= i; j-- {
			if !plausibleGrouping(groups[i : j+1]) {
				continue
			}
			digits := strings.Join(groups[i:j+1], "")
			if n := len(digits); n < 13 || n > 19 {
				continue
			}
			if validCard(digits) {
				cards = append(cards, digits)
				i = j + 1
				found = true
				break
			}
		}
		if !found {
			i++
		}
	}
	return cards
}

// splitGroups splits a run at spaces and dashes.
func splitGroups(run string) []string {
	return strings.FieldsFunc(run, func(r rune) bool { return r == ' ' || r == '-' })
}

// plausibleGrouping reports whether groups could be one card as people write it: one group, or a first group
// of four digits followed by groups of one to six digits (the last may be short: 4-4-4-1 is a 13-digit Visa
// number, 4-4-4-4-3 a 19-digit one).
func plausibleGrouping(groups []string) bool {
	if len(groups) == 1 {
		return true
	}
	if len(groups[0]) != 4 {
		return false
	}
	for k, g := range groups[1:] {
		last := k == len(groups)-2
		if len(g) > 6 || (!last && len(g) < 4) {
			return false
		}
	}
	return true
}

// validCard reports whether digits (13 to 19 ASCII digits) is a payment card number: the Luhn checksum holds,
// the issuer prefix (IIN) belongs to a card network that issues numbers of that length, and the number is not
// one repeated digit (0000000000000000 passes Luhn).
func validCard(digits string) bool {
	n := len(digits)
	if n < 13 || n > 19 || !allDigits(digits) {
		return false
	}
	if strings.Count(digits, digits[:1]) == n {
		return false
	}
	return luhn(digits) && issuerAllows(digits)
}

// luhn reports whether the Luhn (mod 10) checksum of the ASCII digits holds.
func luhn(digits string) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// issuerAllows reports whether the number's prefix belongs to a card network that issues numbers of its
// length. The table covers the networks in ISO/IEC 7812 registrations that matter for mail DLP: Visa,
// Mastercard, American Express, Discover, Diners Club, JCB, UnionPay, Maestro, Mir, RuPay, Troy, Verve. It is
// a sanity check against digit strings that merely pass Luhn (one in ten do), not an exact BIN database.
func issuerAllows(d string) bool {
	n := len(d)
	p := func(k int) int { return atoi(d[:k]) }
	in := func(v, lo, hi int) bool { return v >= lo && v <= hi }
	switch {
	case d[0] == '4': // Visa
		return n == 13 || n == 16 || n == 19
	case in(p(2), 51, 55), in(p(4), 2221, 2720): // Mastercard
		return n == 16
	case p(2) == 34, p(2) == 37: // American Express
		return n == 15
	case in(p(4), 2200, 2204): // Mir
		return n >= 16
	case p(4) == 6011, in(p(3), 644, 649), p(2) == 65, in(p(6), 622126, 622925): // Discover
		return n >= 16
	case p(2) == 62: // UnionPay
		return n >= 16
	case in(p(3), 300, 305), p(2) == 36, p(2) == 38, p(2) == 39: // Diners Club
		return n >= 14
	case in(p(4), 3528, 3589): // JCB
		return n >= 16
	case p(2) == 50, in(p(2), 56, 69): // Maestro, RuPay (60, 65), Troy (65), Verve (5061, 6500)
		return n >= 13
	case p(2) == 81, p(2) == 82: // RuPay
		return n == 16
	}
	return false
}

// ibanLengths is the length of an IBAN in each country of the SWIFT IBAN registry (release 98, 2024).
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
	"BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
	"EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
	"GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
	"IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
	"LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
	"NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
	"SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// ibanInRun returns the IBAN at the start of a run matched by ibanPattern or ibanGroupedPattern, in canonical form (no spaces), or
// "". The country code gives the length; the IBAN must end where the run ends or at a space (so that
// "DE89 3704 0044 0532 0130 00 IS" yields the IBAN and "DE8937040044053201300012" does not), and the
// ISO 7064 mod 97-10 check must hold.
func ibanInRun(run string) string {
	if len(run) < 4 {
		return ""
	}
	want, ok := ibanLengths[run[:2]]
	if !ok {
		return ""
	}
	var b strings.Builder
	i := 0
	for ; i < len(run) && b.Len() < want; i++ {
		if c := run[i]; c != ' ' {
			b.WriteByte(c)
		}
	}
	if b.Len() != want || (i < len(run) && run[i] != ' ') {
		return ""
	}
	iban := b.String()
	if !validIBAN(iban) {
		return ""
	}
	return iban
}

// validIBAN reports whether s (capitals and digits, no spaces) has its country's length and a valid
// ISO 7064 mod 97-10 checksum.
func validIBAN(s string) bool {
	if len(s) < 5 || ibanLengths[s[:2]] != len(s) {
		return false
	}
	// Move the first four characters to the end, turn letters into 10..35 and take the number mod 97,
	// one character at a time so no big integers are needed.
	rearranged := s[4:] + s[:4]
	rem := 0
	for i := 0; i < len(rearranged); i++ {
		c := rearranged[i]
		switch {
		case c >= '0' && c <= '9':
			rem = (rem*10 + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			rem = (rem*100 + int(c-'A') + 10) % 97
		default:
			return false
		}
	}
	return rem == 1
}

// redact masks a number for logs and tags: the first four and the last four characters stay, every other one
// becomes '*' (4111111111111111 → 4111********1111, DE89370400440532013000 → DE89**************3000). That
// is stricter than the PCI DSS display rule (first six, last four) and still lets a reader tell which card or
// account a report is about.
func redact(number string) string {
	if len(number) <= 8 {
		return strings.Repeat("*", len(number))
	}
	return number[:4] + strings.Repeat("*", len(number)-8) + number[len(number)-4:]
}

// allDigits reports whether s is a non-empty string of ASCII digits.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// atoi converts a short string of ASCII digits (validated by the caller).
func atoi(s string) int {
	v := 0
	for i := 0; i < len(s); i++ {
		v = v*10 + int(s[i]-'0')
	}
	return v
}
