package field

import "strings"

// ABITable is the Markdown table of the plugin-visible fields for sdk/ABI.md: name, number of values, the hooks
// where each protocol family has it, and the meaning.
func ABITable() string {
	var b strings.Builder
	b.WriteString("| field | values | SMTP, submission | POP3 | IMAP | meaning |\n|---|---|---|---|---|---|\n")
	for i := range Table {
		f := &Table[i]
		if f.Name == "" {
			continue
		}
		values := "1"
		if f.Type == List {
			values = "n"
		}
		row(&b, "`"+f.Name+"`", values, f)
	}
	return b.String()
}

// FactTable is the Markdown table of the policy facts for docs/CONFIG.md.
func FactTable() string {
	var b strings.Builder
	b.WriteString("| attribute | type | SMTP, submission | POP3 | IMAP | meaning |\n|---|---|---|---|---|---|\n")
	for i := range Table {
		f := &Table[i]
		if f.Fact == "" {
			continue
		}
		row(&b, "`msg."+f.Fact+"`", f.Type.String(), f)
	}
	return b.String()
}

func row(b *strings.Builder, name, kind string, f *Field) {
	cells := []string{name, kind}
	for fam := range NumFamilies {
		c := hooksText(f.At[fam])
		if f.Optional && f.At[fam] != None {
			c += " ¹"
		}
		cells = append(cells, c)
	}
	cells = append(cells, f.Doc)
	b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
}

// hooksText writes a hook set for the docs: "all", "—", or the hook names.
func hooksText(h Hooks) string {
	switch h {
	case Always:
		return "all"
	case None:
		return "—"
	}
	var names []string
	for x := range NumHooks {
		if h.Has(x) {
			names = append(names, "`"+x.String()+"`")
		}
	}
	return strings.Join(names, ", ")
}
