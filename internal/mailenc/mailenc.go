// Package mailenc writes the old binary-to-text encodings that mail clients still decode (uuencode, yEnc), for
// the tests and the evasion corpus: the proxy itself only decodes them (proxy/message).
package mailenc

import (
	"fmt"
	"strings"
)

// UUEncode encodes data as a uuencode block (mode 644) with CRLF line endings, 45 bytes a line.
func UUEncode(name string, data []byte) string {
	enc := func(v byte) byte {
		if v == 0 {
			return '`'
		}
		return v + ' '
	}
	var b strings.Builder
	fmt.Fprintf(&b, "begin 644 %s\r\n", name)
	for len(data) > 0 {
		n := min(45, len(data))
		line := data[:n]
		data = data[n:]
		b.WriteByte(enc(byte(n)))
		for i := 0; i < n; i += 3 {
			var g [3]byte
			copy(g[:], line[i:min(i+3, n)])
			b.WriteByte(enc(g[0] >> 2))
			b.WriteByte(enc((g[0]<<4 | g[1]>>4) & 0x3f))
			b.WriteByte(enc((g[1]<<2 | g[2]>>6) & 0x3f))
			b.WriteByte(enc(g[2] & 0x3f))
		}
		b.WriteString("\r\n")
	}
	b.WriteString("`\r\nend\r\n")
	return b.String()
}

// YEncode encodes data as a single-part yEnc block with CRLF line endings, 128 characters a line.
func YEncode(name string, data []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "=ybegin line=128 size=%d name=%s\r\n", len(data), name)
	col := 0
	for _, c := range data {
		v := c + 42
		switch v {
		case 0, '\r', '\n', '=':
			b.WriteByte('=')
			v += 64
			col++
		}
		b.WriteByte(v)
		col++
		if col >= 128 {
			b.WriteString("\r\n")
			col = 0
		}
	}
	fmt.Fprintf(&b, "\r\n=yend size=%d\r\n", len(data))
	return b.String()
}
