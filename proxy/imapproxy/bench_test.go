package imapproxy

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// BenchmarkListFolder measures a client listing a folder of 200 messages (RFC822.SIZE, BODYSTRUCTURE, the header):
// directly against the in-process upstream, through the proxy with the cache empty (every message downloaded and
// filtered), and with the cache warm (every listing after the first).
func BenchmarkListFolder(b *testing.B) {
	up := newMemUpstream(b, nil)
	for i := 0; i < 200; i++ {
		up.add("INBOX", multipartMsg+strings.Repeat("padding line\r\n", 200))
	}
	list := func(b *testing.B, c *imapclient.Client) {
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, RFC822Size: true,
			BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
			BodySection:   []*imap.FetchItemBodySection{{Peek: true, Specifier: imap.PartSpecifierHeader}}}).Collect()
		if err != nil || len(msgs) != 200 {
			b.Fatalf("%d messages, %v", len(msgs), err)
		}
	}
	b.Run("direct", func(b *testing.B) {
		c := up.direct()
		c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			list(b, c)
		}
	})
	b.Run("proxy-first", func(b *testing.B) {
		r := newRig(b, up, nil)
		c := r.client(nil)
		c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			r.srv.cache, _ = newResultCache(r.srv.opts.Cache, r.srv.log)
			b.StartTimer()
			list(b, c)
		}
	})
	b.Run("proxy-cached", func(b *testing.B) {
		r := newRig(b, up, nil)
		c := r.client(nil)
		c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		list(b, c)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			list(b, c)
		}
	})
}
