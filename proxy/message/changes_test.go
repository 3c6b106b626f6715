package message

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestValidHeaderName(t *testing.T) {
	for _, ok := range []string{"X-Spam", "x", "X_Weird!#$%&'*+-.^`|~", strings.Repeat("a", 76)} {
		if err := ValidHeaderName(ok); err != nil {
			t.Errorf("ValidHeaderName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "X Spam", "X:Spam", "X-Spam\r\nBcc", "X\x00", "X\x7f", "Ünï", strings.Repeat("a", 77), "Subject:"} {
		if err := ValidHeaderName(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidHeaderName(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestValidHeaderValue(t *testing.T) {
	for _, ok := range []string{"", "plain", "tab\tinside", "caf\u00e9 \u2603", strings.Repeat("v", 64<<10)} {
		if err := ValidHeaderValue(ok); err != nil {
			t.Errorf("ValidHeaderValue(%.20q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"a\r\nBcc: victim@example.com", "a\nb", "a\rb", "nul\x00", "bad\xffutf8", strings.Repeat("v", 64<<10+1)} {
		if err := ValidHeaderValue(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidHeaderValue(%.20q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// Every way a plugin could smuggle a line break or a bad name into the header is refused, and nothing is
// recorded.
func TestInjectionRejected(t *testing.T) {
	var c Changes
	attempts := []error{
		c.AddHeader("X-Ok", "v\r\nBcc: victim@example.com"),
		c.AddHeader("X-Ok\r\nBcc", "v"),
		c.AddHeader("Bcc: x", "v"),
		c.SetHeader("Subject", "x\nX-Injected: 1"),
		c.SetHeader("Sub ject", "x"),
		c.RemoveHeader("X\r\n"),
		c.PrefixSubject("[SPAM]\r\nBcc: victim@example.com"),
		c.PrefixSubject(" "),
		c.AddRecipient("victim@example.com>\r\nRCPT TO:<other@example.com"),
		c.AddHeader("Content-Type", "text/html"),
		c.SetHeader("content-transfer-encoding", "8bit"),
		c.RemoveHeader("MIME-Version"),
	}
	for i, err := range attempts {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("attempt %d: %v, want ErrInvalid", i, err)
		}
	}
	if c.Len() != 0 {
		t.Errorf("%d changes recorded: %+v", c.Len(), c.List())
	}
}

func TestChangeValidation(t *testing.T) {
	var c Changes
	bad := []error{
		c.AppendBanner("", ""),
		c.AppendBanner("nul\x00", ""),
		c.AppendBanner("", "bad\xff"),
		c.AppendBanner(strings.Repeat("x", 999), ""),
		c.AppendBanner(strings.Repeat("x", 64<<10+1), ""),
		c.RemovePart(0),
		c.RemovePart(-3),
		c.ReplacePart(-1, "text/plain", nil),
		c.ReplacePart(1, "multipart/mixed; boundary=x", nil),
		c.ReplacePart(1, "message/rfc822", nil),
		c.ReplacePart(1, "not a type", nil),
		c.ReplacePart(1, "text/plain\r\nX: y", nil),
	}
	for i, err := range bad {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("case %d: %v, want ErrInvalid", i, err)
		}
	}
	if c.Len() != 0 {
		t.Fatalf("recorded %+v", c.List())
	}
	good := []error{
		c.AppendBanner("line one\nline two", ""),
		c.AppendBanner("", "<p>html</p>"),
		c.RemovePart(1),
		c.ReplacePart(0, `Text/Plain; Charset="UTF-8"`, []byte("x")),
		c.AddHeader("X-Tag", "1"),
	}
	for i, err := range good {
		if err != nil {
			t.Errorf("good case %d: %v", i, err)
		}
	}
	if l := c.List(); len(l) != 5 || l[3].ContentType != "text/plain; charset=UTF-8" || l[3].Size != 1 {
		t.Errorf("list %+v", l)
	}
}

func TestAddRecipient(t *testing.T) {
	var c Changes
	for _, ok := range []string{"bob@example.com", "b.o+b@sub.example.co.uk", "x@[192.0.2.1]", "j\u00f6rg@m\u00fcller.de"} {
		if err := c.AddRecipient(ok); err != nil {
			t.Errorf("AddRecipient(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "bob", "@example.com", "bob@", "<bob@example.com>", "bob @example.com", "bob@exa mple.com",
		"bob@example..com", "bob@-example.com", "bob@example.com\x00", "bob@exa_mple.com", "a,b@example.com",
		strings.Repeat("l", 65) + "@example.com", "b@" + strings.Repeat("d", 260)} {
		if err := c.AddRecipient(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddRecipient(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := c.AddRecipient("bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if got := c.Recipients(); len(got) != 4 || got[0] != "bob@example.com" {
		t.Errorf("Recipients() = %q (duplicates must be dropped)", got)
	}
}

func TestChangesListMergeAndNil(t *testing.T) {
	var nilc *Changes
	if nilc.Len() != 0 || nilc.List() != nil || nilc.Recipients() != nil || nilc.Bytes() != 0 || nilc.modifies() {
		t.Error("nil Changes is not empty")
	}
	var a, b Changes
	_ = a.AddHeader("X-A", "1")
	_ = a.AddRecipient("x@example.com")
	_ = b.PrefixSubject("[B]")
	_ = b.AddRecipient("x@example.com")
	_ = b.AddRecipient("y@example.com")
	a.Merge(&b)
	a.Merge(nil)
	var ops []string
	for _, ch := range a.List() {
		ops = append(ops, string(ch.Op))
	}
	if strings.Join(ops, ",") != "add_header,add_recipient,prefix_subject,add_recipient" {
		t.Errorf("merged ops %v", ops)
	}
	if got := a.Recipients(); strings.Join(got, ",") != "x@example.com,y@example.com" {
		t.Errorf("recipients %v", got)
	}
	if a.Bytes() != len("X-A")+1+len("x@example.com")+3+len("y@example.com") {
		t.Errorf("Bytes() = %d", a.Bytes())
	}
	// List is a copy.
	l := a.List()
	l[0].Name = "changed"
	if a.List()[0].Name != "X-A" {
		t.Error("List() shares its slice")
	}
	var only Changes
	_ = only.AddRecipient("z@example.com")
	if only.modifies() {
		t.Error("add_recipient modifies the message")
	}
}

func TestChangeJSON(t *testing.T) {
	var c Changes
	_ = c.ReplacePart(2, "application/octet-stream", []byte("secret content"))
	_ = c.AddHeader("X-A", "b")
	out, err := json.Marshal(c.List())
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"replace_part","part":2,"content_type":"application/octet-stream","size":14},{"op":"add_header","name":"X-A","value":"b"}]`
	if string(out) != want {
		t.Errorf("JSON %s", out)
	}
}
