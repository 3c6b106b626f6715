package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
)

// The line layout. A record is one line of JSON whose first members are always "v" and "seq", and whose last
// members are always "prev" and "hash":
//
//	{"v":1,"seq":N,"event":…,…,"prev":"<64 hex>","hash":"<64 hex>"}\n
//
// hash is the SHA-256 of the line's bytes with the `,"hash":"…"` member removed, that is of the line's first
// len-75 bytes followed by "}". Hashing the bytes as written, rather than a re-encoding, means a verifier needs
// no canonical JSON encoder and any change to any byte is seen.
const (
	linePrefix   = `{"v":1,"seq":`
	prevMember   = `,"prev":"`
	hashMember   = `,"hash":"`
	hexLen       = sha256.Size * 2
	hashSuffix   = len(hashMember) + hexLen + len(`"}`) // 75
	prevSuffix   = len(prevMember) + hexLen + len(`"`)  // 74
	minLineBytes = len(linePrefix) + 1 + prevSuffix + hashSuffix
)

// genesis is the prev of the first record of a chain.
var genesis = string(bytes.Repeat([]byte("0"), hexLen))

// maxLine bounds one record line including its newline. Append degrades a larger record (see Record.Truncated)
// and Verify and Open refuse longer lines, so reading a log never needs more memory than this.
const maxLine = 1 << 20

// truncatedRcpts is how many recipients a degraded record keeps of each list.
const truncatedRcpts = 100

// errTooLarge is returned by Append for a record that exceeds maxLine even without tags and change lists.
var errTooLarge = errors.New("record too large")

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// body encodes r without its chain members: `{"v":1,"event":…}`. It is done outside the log's lock.
func body(r *Record) ([]byte, error) {
	rc := *r
	rc.V, rc.Seq, rc.Prev, rc.Hash = Version, 0, "", ""
	rc.Raw = rawFields(&rc)
	b, err := encode(&rc)
	if err != nil {
		return nil, err
	}
	if len(b)+len(`"seq":18446744073709551615,`)+prevSuffix+hashSuffix+1 > maxLine {
		// Tags, change lists and recipient lists are what can grow large; dropping them keeps the decision (who,
		// what, action, plugins and verdicts) on record rather than losing the record.
		rc.Truncated = true
		rc.Tags, rc.Changes = nil, nil
		if len(rc.Rcpts) > truncatedRcpts {
			rc.Rcpts = rc.Rcpts[:truncatedRcpts]
		}
		if len(rc.RcptsAdded) > truncatedRcpts {
			rc.RcptsAdded = rc.RcptsAdded[:truncatedRcpts]
		}
		rc.Policies = make([]Policy, len(r.Policies))
		for i, p := range r.Policies {
			p.Plugins = append([]Plugin(nil), p.Plugins...)
			for j := range p.Plugins {
				p.Plugins[j].Tags, p.Plugins[j].Changes = nil, nil
			}
			rc.Policies[i] = p
		}
		rc.Raw = rawFields(&rc)
		if b, err = encode(&rc); err != nil {
			return nil, err
		}
		if len(b)+len(`"seq":18446744073709551615,`)+prevSuffix+hashSuffix+1 > maxLine {
			return nil, fmt.Errorf("%w: %d bytes without tags (limit %d)", errTooLarge, len(b), maxLine)
		}
	}
	return b, nil
}

func encode(r *Record) ([]byte, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 { // don't keep the occasional huge buffer alive
			buf.Reset()
			bufPool.Put(buf)
		}
	}()
	buf.Reset()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false) // Message-IDs and addresses are <…>; keep them greppable
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encoding record: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if !bytes.HasPrefix(b, []byte(`{"v":1,`)) || !bytes.HasSuffix(b, []byte("}")) {
		return nil, fmt.Errorf("encoding record: unexpected layout %.40q", b) // a change to Record broke the layout
	}
	return bytes.Clone(b), nil
}

// seal makes the line for body b at position seq after prev, and returns it with its hash.
func seal(dst, b []byte, seq uint64, prev string) (line []byte, hash string) {
	line = append(dst[:0], linePrefix...)
	line = strconv.AppendUint(line, seq, 10)
	line = append(line, ',')
	line = append(line, b[len(`{"v":1,`):len(b)-1]...)
	line = append(line, prevMember...)
	line = append(line, prev...)
	line = append(line, '"', '}')
	sum := sha256.Sum256(line)
	hash = hex.EncodeToString(sum[:])
	line = line[:len(line)-1] // drop the "}" again: the hash member goes before it
	line = append(line, hashMember...)
	line = append(line, hash...)
	line = append(line, '"', '}', '\n')
	return line, hash
}

// header is what the chain needs from a line.
type header struct {
	seq              uint64
	event            Event
	prev, hash, calc string // calc is the hash computed from the line
}

// parseLine checks a line (without its newline) against the layout and computes its hash. It does not compare
// the hashes: the caller reports a mismatch with the line's position.
func parseLine(line []byte) (header, error) {
	var h header
	if len(line) < minLineBytes {
		return h, fmt.Errorf("not a record (%d bytes)", len(line))
	}
	if !json.Valid(line) {
		return h, errors.New("not valid JSON")
	}
	if !bytes.HasPrefix(line, []byte(linePrefix)) {
		if v, ok := bytes.CutPrefix(line, []byte(`{"v":`)); ok {
			if i := bytes.IndexByte(v, ','); i > 0 {
				return h, fmt.Errorf("record version %s is not supported (this Postern reads version %d)", v[:i], Version)
			}
		}
		return h, fmt.Errorf("does not start with %s", linePrefix)
	}
	rest := line[len(linePrefix):]
	i := bytes.IndexByte(rest, ',')
	if i <= 0 || (i > 1 && rest[0] == '0') {
		return h, errors.New("bad seq")
	}
	seq, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil || seq == 0 {
		return h, errors.New("bad seq")
	}
	h.seq = seq
	if ev, ok := bytes.CutPrefix(rest[i+1:], []byte(`"event":"`)); ok {
		if j := bytes.IndexByte(ev, '"'); j > 0 {
			h.event = Event(ev[:j])
		}
	}
	if h.event == "" {
		return h, errors.New(`no "event" after "seq"`)
	}
	n := len(line)
	hm := line[n-hashSuffix:]
	pm := line[n-hashSuffix-prevSuffix : n-hashSuffix]
	if !bytes.HasPrefix(hm, []byte(hashMember)) || !bytes.HasSuffix(hm, []byte(`"}`)) ||
		!isHex(hm[len(hashMember):len(hashMember)+hexLen]) {
		return h, errors.New(`does not end with a "hash" member`)
	}
	if !bytes.HasPrefix(pm, []byte(prevMember)) || pm[len(pm)-1] != '"' || !isHex(pm[len(prevMember):len(prevMember)+hexLen]) {
		return h, errors.New(`no "prev" member before "hash"`)
	}
	h.hash = string(hm[len(hashMember) : len(hashMember)+hexLen])
	h.prev = string(pm[len(prevMember) : len(prevMember)+hexLen])
	d := sha256.New()
	d.Write(line[:n-hashSuffix])
	d.Write([]byte("}"))
	h.calc = hex.EncodeToString(d.Sum(nil))
	return h, nil
}

// isHex reports whether b is lower-case hexadecimal, the only form the writer produces.
func isHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
