package smtpproxy

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// stallReader serves its input in reads of random sizes, then reports a read that would wait for the network
// (as a client waiting for its reply makes go-smtp wait) instead of returning more.
type stallReader struct {
	in      []byte
	rnd     *rand.Rand
	stalled bool
	tap     *dataTap
}

func (s *stallReader) Read(p []byte) (int, error) {
	if len(s.in) == 0 {
		s.stalled = true
		return 0, io.ErrNoProgress
	}
	n := min(len(p), len(s.in), 1+s.rnd.IntN(700))
	copy(p, s.in[:n])
	s.in = s.in[n:]
	s.tap.Write(p[:n]) // go-smtp's Debug tee
	return n, nil
}

// TestTeeDataNeverWaitsPastTheEnd: teeData pumps go-smtp's reader in bulk, as much as go-smtp can return from
// what it already read; it must never make go-smtp wait for the network once the message has ended, or the
// client, which waits for its reply, would wait until the data timeout.
func TestTeeDataNeverWaitsPastTheEnd(t *testing.T) {
	rnd := rand.New(rand.NewPCG(9, 10))
	alphabet := []byte("...\r\r\n\nab")
	for iter := range 5000 {
		body := make([]byte, rnd.IntN(3000))
		for i := range body {
			body[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		in := append(body, "\r\n.\r\n"...)
		tap := &dataTap{}
		src := &stallReader{in: in, rnd: rnd, tap: tap}
		// go-smtp's reader over its 4 KiB buffer, as in its Conn.
		gr := &goSMTPReader{r: bufio.NewReaderSize(src, 4096)}
		td := newTeeData(tap, gr, 0)
		var out []byte
		var err error
		for err == nil {
			p := make([]byte, 1+rnd.IntN(5000))
			var n int
			n, err = td.Read(p)
			out = append(out, p[:n]...)
		}
		if src.stalled {
			t.Fatalf("case %d, input %q: go-smtp was made to wait for more input after the message", iter, in)
		}
		if err != io.EOF {
			t.Fatalf("case %d, input %q: %v after %d bytes (stalled %v)", iter, in, err, len(out), src.stalled)
		}
		want, _, _ := refData(in, 0, 0)
		if !bytes.Equal(out, want) {
			t.Fatalf("case %d, input %q: content %q, want %q", iter, in, out, want)
		}
	}
}

// goSMTPReader is go-smtp's dataReader (data.go), byte for byte: it returns only when p is full, at its end of
// data, or on an error.
type goSMTPReader struct {
	r     *bufio.Reader
	state int
}

func (r *goSMTPReader) Read(b []byte) (n int, err error) {
	for n < len(b) && r.state != dataEOF {
		var c byte
		if c, err = r.r.ReadByte(); err != nil {
			return n, err
		}
		switch r.state {
		case dataBeginLine:
			if c == '.' {
				r.state = dataDot
				continue
			}
			if c == '\r' {
				r.state = dataCR
				break
			}
			r.state = dataMid
		case dataDot:
			if c == '\r' {
				r.state = dataDotCR
				continue
			}
			r.state = dataMid
		case dataDotCR:
			if c == '\n' {
				r.state = dataEOF
				continue
			}
			r.state = dataMid
		case dataCR:
			if c == '\n' {
				r.state = dataBeginLine
				break
			}
			r.state = dataMid
		case dataMid:
			if c == '\r' {
				r.state = dataCR
			}
		}
		b[n] = c
		n++
	}
	if r.state == dataEOF {
		return n, io.EOF
	}
	return n, err
}

// BenchmarkTeeData compares reading a 1 MiB message with go-smtp's reader alone and through teeData, which the
// relay uses inside TLS: the cost of finding the end itself.
func BenchmarkTeeData(b *testing.B) {
	line := bytes.Repeat([]byte("x"), 78)
	var msg []byte
	for len(msg) < 1<<20 {
		msg = append(append(msg, line...), "\r\n"...)
	}
	msg = append(msg, ".\r\n"...)
	buf := make([]byte, 32<<10)
	for _, tee := range []bool{false, true} {
		name := "go-smtp"
		if tee {
			name = "teeData"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			for range b.N {
				tap := &dataTap{}
				src := &stallReader{in: msg, rnd: rand.New(rand.NewPCG(1, 1)), tap: tap}
				var r io.Reader = &goSMTPReader{r: bufio.NewReaderSize(src, 4096)}
				if tee {
					r = newTeeData(tap, r, 0)
				}
				for {
					if _, err := r.Read(buf); err != nil {
						break
					}
				}
			}
		})
	}
}
