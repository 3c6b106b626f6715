package mailflow

import (
	"bytes"
	"fmt"
	"io"
)

// BareNewlineError reports the first bare CR, bare LF or NUL found in a message.
type BareNewlineError struct {
	What   string // "bare CR", "bare LF" or "NUL byte"
	Offset int64  // from the start of the content
}

func (e *BareNewlineError) Error() string {
	return fmt.Sprintf("message contains a %s at byte %d", e.What, e.Offset)
}

// LineGuard checks (reject mode) or repairs (normalize mode) the line endings of message content as it streams
// through. The only legal line ending in SMTP is CRLF; a lone CR or LF, or a NUL, is what the end-of-data
// lookalikes of SMTP smuggling are made of, and some upstreams treat them as line ends. After the guard no such
// byte is left, and the go-smtp client's dot-stuffing is then exact.
type LineGuard struct {
	// Normalize repairs instead of refusing: every bare CR and bare LF becomes CRLF and NULs are dropped.
	Normalize bool
	pendingCR bool  // the previous byte was a CR whose LF has not been seen yet
	off       int64 // bytes of input consumed
	scratch   []byte
}

// Write passes p to w, checking or repairing it. In reject mode the first offence is returned as a
// *BareNewlineError.
func (g *LineGuard) Write(w io.Writer, p []byte) error {
	if g.Normalize {
		return g.repair(w, p)
	}
	if g.clean(p) {
		g.off += int64(len(p))
		_, err := w.Write(p)
		return err
	}
	// Something is wrong in p: find what, and where.
	start := g.off
	i := 0
	for i < len(p) {
		if g.pendingCR {
			if p[i] != '\n' {
				return &BareNewlineError{"bare CR", start + int64(i) - 1}
			}
			g.pendingCR = false
			i++
			continue
		}
		j := bytes.IndexAny(p[i:], "\r\n\x00")
		if j < 0 {
			break
		}
		i += j
		switch p[i] {
		case '\n':
			return &BareNewlineError{"bare LF", start + int64(i)}
		case 0:
			return &BareNewlineError{"NUL byte", start + int64(i)}
		}
		g.pendingCR = true
		i++
	}
	g.off += int64(len(p))
	_, err := w.Write(p)
	return err
}

// clean reports whether p, after what came before it, has CRLF line endings only and no NUL, and updates
// pendingCR if so. It checks with a few whole-buffer scans (each vectorised by package bytes) rather than byte by
// byte: no NUL, every LF preceded by a CR, and as many CRs as that accounts for (plus one at the very end).
func (g *LineGuard) clean(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	if g.pendingCR && p[0] != '\n' {
		return false
	}
	if bytes.IndexByte(p, 0) >= 0 {
		return false
	}
	crs := 0 // the CRs in p that the LFs in p account for
	for i := 0; ; {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		switch {
		case i > 0 && p[i-1] == '\r':
			crs++
		case i == 0 && g.pendingCR:
		default:
			return false
		}
		i++
	}
	end := p[len(p)-1] == '\r'
	if end {
		crs++
	}
	if bytes.Count(p, []byte{'\r'}) != crs {
		return false
	}
	g.pendingCR = end
	return true
}

// repair writes p with every bare CR and bare LF turned into CRLF and every NUL dropped.
func (g *LineGuard) repair(w io.Writer, p []byte) error {
	if !g.pendingCR && len(p) > 0 && p[len(p)-1] != '\r' && g.clean(p) {
		// Nothing to repair (the usual case), found with clean's whole-buffer scans.
		g.off += int64(len(p))
		_, err := w.Write(p)
		return err
	}
	out := g.scratch[:0]
	for _, c := range p {
		if g.pendingCR {
			g.pendingCR = false
			out = append(out, '\r', '\n')
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\r':
			g.pendingCR = true
		case '\n':
			out = append(out, '\r', '\n')
		case 0:
		default:
			out = append(out, c)
		}
	}
	g.off += int64(len(p))
	g.scratch = out
	_, err := w.Write(out)
	return err
}

// Finish handles a CR at the very end of the content.
func (g *LineGuard) Finish(w io.Writer) error {
	if !g.pendingCR {
		return nil
	}
	g.pendingCR = false
	if !g.Normalize {
		return &BareNewlineError{"bare CR", g.off - 1}
	}
	_, err := w.Write([]byte("\r\n"))
	return err
}

// GuardWriter passes writes through a LineGuard.
type GuardWriter struct {
	G *LineGuard
	W io.Writer
}

func (gw GuardWriter) Write(p []byte) (int, error) {
	if err := gw.G.Write(gw.W, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
