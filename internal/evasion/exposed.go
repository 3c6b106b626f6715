package evasion

import (
	"bytes"
	"io"
	"slices"
	"strings"

	"github.com/postern/postern/proxy/message"
)

// Exposed reports where the index m of c.Raw exposes c's payload to plugins: the id of a part whose decoded
// content holds eicar.zip (PayloadContent), or whose candidate file names include c.Name, compared the way
// attachment-guard compares them (PayloadName); -1 if none does.
func Exposed(m *message.Message, c Case) int {
	for _, p := range m.Parts() {
		if p.Multipart {
			continue
		}
		switch c.Payload {
		case PayloadName:
			if slices.ContainsFunc(p.Filenames, func(n string) bool { return SameName(n, c.Name) }) {
				return p.ID
			}
		case PayloadContent:
			r, err := m.Decoded(p.ID)
			if err != nil {
				continue
			}
			b, err := io.ReadAll(io.LimitReader(r, 64<<20))
			if err == nil && bytes.Contains(b, Zip()) {
				return p.ID
			}
		}
	}
	return -1
}

// SameName compares file names as a user sees them: case-insensitively, without trailing dots and spaces.
func SameName(a, b string) bool {
	trim := func(s string) string { return strings.TrimRight(strings.ToLower(s), ". ") }
	return trim(a) == trim(b)
}
