package pluginhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero/api"

	"github.com/postern/postern/proxy/field"
	"github.com/postern/postern/proxy/message"
)

// ABIVersion is the ABI version this host implements (ABI §5): a plugin's postern_abi_version must return it.
const ABIVersion = 1

const abiVersion = ABIVersion

// hostModule is the import module of ABI version 1.
const hostModule = "postern"

// The negative results of ABI §3.1.
const (
	errNotFound    int32 = -1
	errInvalid     int32 = -2
	errUnavailable int32 = -3
	errDecode      int32 = -4
)

// headerDecoded is header_get's flag bit; other bits are refused so that a plugin relying on a future flag fails
// visibly on this host.
const headerDecoded = 0x1

// hostFunc is one function of the postern import module.
type hostFunc struct {
	name   string
	params []api.ValueType
	fn     func(f frame, s []uint64) int32
}

func params(n int) []api.ValueType {
	p := make([]api.ValueType, n)
	for i := range p {
		p[i] = api.ValueTypeI32
	}
	return p
}

var i32Result = []api.ValueType{api.ValueTypeI32}

// hostFuncs is ABI §3, in its order.
var hostFuncs = []hostFunc{
	{"config_get", params(2), configGet},
	{"field_get", params(5), fieldGet},
	{"header_get", params(7), headerGet},
	{"header_all", params(3), headerAll},
	{"part_count", params(0), partCount},
	{"part_field", params(5), partField},
	{"parts_get", params(2), partsGet},
	{"part_read", params(5), partRead},
	{"message_read", params(3), messageRead},
	{"patterns_compile", params(2), patternsCompile},
	{"part_match", params(6), partMatch},
	{"part_sha256", params(3), partSHA256},
	{"set_verdict", params(6), setVerdict},
	{"tag_add", params(4), tagAdd},
	{"score_add", []api.ValueType{api.ValueTypeF64}, scoreAdd},
	{"log", params(3), logLine},
	{"header_add", params(4), headerAdd},
	{"header_set", params(4), headerSet},
	{"header_remove", params(2), headerRemove},
	{"subject_prefix", params(2), subjectPrefix},
	{"banner_add", params(4), bannerAdd},
	{"part_remove", params(1), partRemove},
	{"part_replace", params(5), partReplace},
	{"rcpt_add", params(2), rcptAdd},
}

// goFunc adapts a hostFunc to wazero: it finds the call's state in ctx and gives the function a frame.
func (h *hostFunc) goFunc() api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		st, _ := ctx.Value(stateKey{}).(*callState)
		if st == nil {
			abort(ErrTrap, "%s called outside a hook call", h.name)
		}
		stack[0] = uint64(uint32(h.fn(frame{ctx: ctx, st: st, mem: mod.Memory(), fn: h.name}, stack)))
	}
}

// frame is what a host function works with during one invocation.
type frame struct {
	ctx context.Context
	st  *callState
	mem api.Memory
	fn  string
}

// in returns the guest's bytes [ptr, ptr+n), a view into its memory (valid until the host function returns),
// aborting the call when the range is outside memory.
func (f frame) in(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	b, ok := f.mem.Read(ptr, n)
	if !ok {
		f.outOfRange(ptr, n)
	}
	return b
}

// out returns the output buffer [buf, buf+limit) as a view, checking it whatever the result will be.
func (f frame) out(buf, limit uint32) []byte {
	if limit == 0 {
		return nil
	}
	return f.in(buf, limit)
}

func (f frame) outOfRange(ptr, n uint32) {
	abort(ErrOutOfRange, "out of range pointer in %s: [%d, %d) is outside the guest's %d bytes of memory",
		f.fn, ptr, uint64(ptr)+uint64(n), f.mem.Size())
}

// put writes as much of v as fits in dst and returns v's full length (the ABI's output convention).
func put[T string | []byte](dst []byte, v T) int32 {
	copy(dst, v)
	return length(len(v))
}

func length(n int) int32 {
	if n > math.MaxInt32 {
		abort(ErrBudget, "value of %d bytes is too large for the ABI", n)
	}
	return int32(n)
}

// message returns the call's message, or nil when message functions are unavailable (not the message hook).
func (f frame) message() *message.Message {
	if f.st.init || f.st.hook != HookMessage {
		return nil
	}
	return f.st.in.Msg
}

// part returns the part with the guest's id, or nil when there is none.
// messagePart returns the message of a message-hook call and its part id: ERR_UNAVAILABLE at any other hook,
// ERR_INVALID for a part that does not exist.
func (f frame) messagePart(id uint32) (*message.Message, *message.Part, int32) {
	m := f.message()
	if m == nil {
		return nil, nil, errUnavailable
	}
	p := part(m, id)
	if p == nil {
		return nil, nil, errInvalid
	}
	return m, p, 0
}

func part(m *message.Message, id uint32) *message.Part {
	parts := m.Parts()
	if uint64(id) >= uint64(len(parts)) {
		return nil
	}
	return &parts[id]
}

// --- context and configuration (ABI §3.2) ---

func configGet(f frame, s []uint64) int32 {
	return put(f.out(uint32(s[0]), uint32(s[1])), f.st.p.config)
}

func fieldGet(f frame, s []uint64) int32 {
	name := f.in(uint32(s[0]), uint32(s[1]))
	index := uint32(s[2])
	dst := f.out(uint32(s[3]), uint32(s[4]))
	st := f.st
	if st.init {
		return errUnavailable // fields describe a call; postern_init has none
	}
	fd, ok := field.LookupBytes(name)
	if !ok {
		return errNotFound
	}
	env := &st.in.Env
	// Where a field is known is data (the field table), the same for the policy facts: a field not known at
	// this hook or in this protocol is unavailable, never an empty value a plugin could mistake for one.
	if !fd.Available(env.Protocol, field.Hook(st.hook)) {
		return errUnavailable
	}
	one := func(v string) int32 {
		if index != 0 {
			return errNotFound
		}
		return put(dst, v)
	}
	many := func(vals []string) int32 {
		if uint64(index) >= uint64(len(vals)) {
			return errNotFound
		}
		return put(dst, vals[index])
	}
	num := func(n int64) int32 {
		if index != 0 {
			return errNotFound
		}
		var b [20]byte
		return put(dst, strconv.AppendInt(b[:0], n, 10))
	}
	switch fd.Name {
	case "hook":
		return one(st.hook.String())
	case "protocol":
		return one(env.Protocol)
	case "direction":
		return one(env.Direction)
	case "listener":
		return one(env.Listener)
	case "client.ip":
		return one(env.ClientIP)
	case "client.port":
		return num(int64(env.ClientPort))
	case "client.helo":
		return one(env.HELO)
	case "tls.version":
		return one(env.TLSVersion)
	case "tls.cipher":
		return one(env.TLSCipher)
	case "upstream.tls.version":
		return one(env.UpstreamTLSVersion)
	case "upstream.tls.cipher":
		return one(env.UpstreamTLSCipher)
	case "auth.user":
		return one(env.AuthUser)
	case "mail_from":
		if !env.HasMailFrom {
			return errUnavailable
		}
		return one(env.MailFrom)
	case "smtputf8":
		if !env.HasMailFrom {
			return errUnavailable
		}
		if env.SMTPUTF8 {
			return one("1")
		}
		return one("0")
	case "rcpt":
		return many(env.Rcpts)
	case "rcpt.current":
		return one(st.in.RcptCurrent)
	case "mailbox.user":
		return one(env.MailboxUser)
	case "mailbox.name":
		return one(env.Mailbox)
	case "message.uid":
		if env.UID == 0 {
			return errUnavailable
		}
		return num(int64(env.UID))
	case "message.uidvalidity":
		if env.UIDValidity == 0 {
			return errUnavailable
		}
		return num(int64(env.UIDValidity))
	case "message.uidl":
		if env.UIDL == "" {
			return errUnavailable
		}
		return one(env.UIDL)
	case "message.internal_date":
		if env.InternalDate.IsZero() {
			return errUnavailable
		}
		return one(InternalDateText(env.InternalDate))
	case "message.flags":
		return many(env.Flags)
	case "command":
		return one(env.Command)
	case "message.size":
		m := f.message()
		if m == nil {
			return errUnavailable
		}
		return num(m.Size())
	case "message.malformed":
		if f.message() == nil {
			return errUnavailable
		}
		return many(st.in.malformedValues())
	case "message.ambiguous":
		if f.message() == nil {
			return errUnavailable
		}
		return many(st.in.ambiguousValues())
	case "message.limit_exceeded":
		m := f.message()
		if m == nil {
			return errUnavailable
		}
		return one(m.LimitExceeded())
	}
	// A row of the table this host does not serve: a test makes sure there is none.
	return errNotFound
}

// InternalDateText is how the field message.internal_date and the policy fact msg.internal_date write a date:
// RFC 3339 in UTC, to the second.
func InternalDateText(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// --- reading the message (ABI §3.3) ---

// validHeaderName is message.ValidHeaderName without making a string: 1 to 76 printable US-ASCII characters
// other than ':'.
func validHeaderName(name []byte) bool {
	if len(name) == 0 || len(name) > 76 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

func headerGet(f frame, s []uint64) int32 {
	name := f.in(uint32(s[1]), uint32(s[2]))
	index, flags := uint32(s[3]), uint32(s[4])
	dst := f.out(uint32(s[5]), uint32(s[6]))
	m := f.message()
	if m == nil {
		return errUnavailable
	}
	if part(m, uint32(s[0])) == nil || flags&^headerDecoded != 0 {
		return errInvalid
	}
	if !validHeaderName(name) {
		return errInvalid
	}
	vals := f.st.in.headerValues(int(uint32(s[0])), name, flags&headerDecoded != 0)
	if uint64(index) >= uint64(len(vals)) {
		return errNotFound
	}
	return put(dst, vals[index])
}

func headerAll(f frame, s []uint64) int32 {
	dst := f.out(uint32(s[1]), uint32(s[2]))
	m, p, code := f.messagePart(uint32(s[0]))
	if code != 0 {
		return code
	}
	hdr, err := m.RawHeader(int(uint32(s[0])))
	if err != nil {
		return errInvalid
	}
	return readRange(hdr, 0, p.Header.End-p.Header.Start, 0, dst)
}

// readRange copies [start+offset, start+size) of r into dst (as much as fits) and returns size.
func readRange(r io.ReaderAt, start, size int64, offset uint32, dst []byte) int32 {
	total := length(int(size))
	if int64(offset) >= size || len(dst) == 0 {
		return total
	}
	n := min(int64(len(dst)), size-int64(offset))
	if _, err := r.ReadAt(dst[:n], start+int64(offset)); err != nil && err != io.EOF {
		return errDecode // the spooled message could not be read: nothing better to tell the guest
	}
	return total
}

func partCount(f frame, _ []uint64) int32 {
	m := f.message()
	if m == nil {
		return errUnavailable
	}
	return length(len(m.Parts()))
}

func partField(f frame, s []uint64) int32 {
	name := f.in(uint32(s[1]), uint32(s[2]))
	dst := f.out(uint32(s[3]), uint32(s[4]))
	_, p, code := f.messagePart(uint32(s[0]))
	if code != 0 {
		return code
	}
	v, ok := appendPartAttr(nil, p, string(name))
	if !ok {
		return errNotFound
	}
	return put(dst, v)
}

// partAttrs are the part attributes of ABI §3.3, in the order parts_get lists them.
var partAttrs = []string{"parent", "depth", "content_type", "charset", "encoding", "disposition", "filename",
	"filenames", "ambiguities", "derived", "incomplete", "size", "multipart", "defects"}

// appendPartAttr appends the value of attribute name of p to b, as part_field gives it; false for an unknown name.
func appendPartAttr(b []byte, p *message.Part, name string) ([]byte, bool) {
	switch name {
	case "parent":
		return strconv.AppendInt(b, int64(p.Parent), 10), true
	case "depth":
		return strconv.AppendInt(b, int64(p.Depth), 10), true
	case "content_type":
		return append(b, p.ContentType...), true
	case "charset":
		return append(b, p.Charset...), true
	case "encoding":
		return append(b, p.Encoding...), true
	case "disposition":
		return append(b, p.Disposition...), true
	case "filename":
		return append(b, p.Filename...), true
	case "size":
		return strconv.AppendInt(b, p.Body.End-p.Body.Start, 10), true
	case "multipart":
		if p.Multipart {
			return append(b, '1'), true
		}
		return append(b, '0'), true
	case "defects":
		return appendDefectLines(b, p.Defects), true
	case "filenames":
		for i, n := range p.Filenames {
			if i > 0 {
				b = append(b, '\n')
			}
			b = append(b, n...)
		}
		return b, true
	case "ambiguities":
		return appendDefectLines(b, p.Ambiguities), true
	case "derived":
		return append(b, p.Derived...), true
	case "incomplete":
		return append(b, p.Incomplete...), true
	}
	return b, false
}

// partsGet gives every part's attributes at once (ABI §3.3 parts_get): what part_count and a part_field call per
// attribute and part would give, in one call. The encoding is made once per message, for the whole chain.
func partsGet(f frame, s []uint64) int32 {
	dst := f.out(uint32(s[0]), uint32(s[1]))
	m := f.message()
	if m == nil {
		return errUnavailable
	}
	return put(dst, f.st.in.partList())
}

// encodePartList encodes m's parts for parts_get: u32 part count, u32 attribute count k, k names, then k values
// per part; every name and value is a u32 length followed by its bytes; integers are little-endian.
func encodePartList(m *message.Message) []byte {
	parts := m.Parts()
	b := make([]byte, 0, 64+len(parts)*(len(partAttrs)*4+64))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(parts)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(partAttrs)))
	for _, name := range partAttrs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(name)))
		b = append(b, name...)
	}
	for i := range parts {
		for _, name := range partAttrs {
			at := len(b)
			b = append(b, 0, 0, 0, 0)
			b, _ = appendPartAttr(b, &parts[i], name)
			binary.LittleEndian.PutUint32(b[at:], uint32(len(b)-at-4))
		}
	}
	return b
}

// appendDefectLines appends a part's defects or ambiguities, one "kind: detail" per line.
func appendDefectLines(b []byte, ds []message.Defect) []byte {
	for i, d := range ds {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(b, d.String()...)
	}
	return b
}

// contentArgs checks the (part, mode) of part_read, part_match and part_sha256: ERR_INVALID for a part that does
// not exist, an unknown mode, or a decoding mode on a multipart.
func contentArgs(m *message.Message, id, mode uint32) int32 {
	p := part(m, id)
	if p == nil || mode > modeText || mode != modeRaw && p.Multipart {
		return errInvalid
	}
	return 0
}

func partRead(f frame, s []uint64) int32 {
	id, mode, offset := uint32(s[0]), uint32(s[1]), uint32(s[2])
	dst := f.out(uint32(s[3]), uint32(s[4]))
	m := f.message()
	if m == nil {
		return errUnavailable
	}
	if mode == modeRaw {
		p := part(m, id)
		if p == nil {
			return errInvalid
		}
		// Raw windows come straight from the message's source into guest memory: no copy, no cache.
		raw, err := m.RawBody(int(id))
		if err != nil {
			return errInvalid
		}
		return readRange(raw, 0, p.Body.End-p.Body.Start, offset, dst)
	}
	if code := contentArgs(m, id, mode); code != 0 {
		return code
	}
	return f.st.in.read(f.ctx, int(id), int(mode), int(offset), dst)
}

func messageRead(f frame, s []uint64) int32 {
	offset := uint32(s[0])
	dst := f.out(uint32(s[1]), uint32(s[2]))
	m := f.message()
	if m == nil {
		return errUnavailable
	}
	return readRange(m.Raw(), 0, m.Size(), offset, dst)
}

// --- host-side helpers (ABI §3.4) ---

func patternsCompile(f frame, s []uint64) int32 {
	n := uint32(s[1])
	if n > maxPatternText {
		abort(ErrBudget, "pattern budget exceeded (%d bytes of patterns, at most %d)", n, maxPatternText)
	}
	text := string(f.in(uint32(s[0]), n))
	inst := f.st.inst
	ps, err := f.st.p.host.patterns.compile(text)
	if err != nil {
		f.st.hostLog(slog.LevelWarn, "patterns_compile: "+err.Error())
		return errInvalid
	}
	for i, have := range inst.patterns {
		if have == ps {
			return int32(i) // the same set again (a plugin compiling in every call): same handle
		}
	}
	if len(inst.patterns) >= maxSetsPerInstance {
		abort(ErrBudget, "pattern budget exceeded (%d pattern sets per instance)", maxSetsPerInstance)
	}
	inst.patterns = append(inst.patterns, ps)
	return int32(len(inst.patterns) - 1)
}

func partMatch(f frame, s []uint64) int32 {
	id, mode, handle, maxN := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])
	dst := f.out(uint32(s[4]), uint32(s[5]))
	st := f.st
	m := f.message()
	if m == nil {
		return errUnavailable
	}
	if code := contentArgs(m, id, mode); code != 0 {
		return code
	}
	if uint64(handle) >= uint64(len(st.inst.patterns)) {
		return errInvalid
	}
	if maxN == 0 || maxN > maxMatches {
		maxN = maxMatches
	}
	key := matchKey{id, mode, handle, maxN}
	if st.hasMatch && st.match == key {
		return put(dst, st.matchOut)
	}
	ms, code := st.in.match(f.ctx, int(id), int(mode), st.inst.patterns[handle], int(maxN))
	if code != 0 {
		return code
	}
	st.matchOut = appendMatches(st.matchOut[:0], ms)
	st.match, st.hasMatch = key, true
	return put(dst, st.matchOut)
}

func partSHA256(f frame, s []uint64) int32 {
	id, mode := uint32(s[0]), uint32(s[1])
	dst := f.in(uint32(s[2]), sha256.Size)
	m := f.message()
	if m == nil {
		return errUnavailable
	}
	if code := contentArgs(m, id, mode); code != 0 {
		return code
	}
	var sum [sha256.Size]byte
	if code := f.st.in.digest(f.ctx, int(id), int(mode), &sum); code != 0 {
		return code
	}
	copy(dst, sum[:])
	return sha256.Size
}

// --- deciding (ABI §3.5) ---

func setVerdict(f frame, s []uint64) int32 {
	kind, code := int32(s[0]), int32(s[1])
	enh := f.in(uint32(s[2]), uint32(s[3]))
	text := f.in(uint32(s[4]), uint32(s[5]))
	if f.st.init {
		return errUnavailable
	}
	v := Verdict{Kind: Kind(kind), Code: int(code), Enhanced: string(enh), Text: string(text)}
	if !v.fill() {
		return errInvalid
	}
	f.st.verdict = v
	return 0
}

// fill checks a verdict from a guest against ABI §3.5 and fills the default codes. It reports whether the verdict
// is acceptable.
func (v *Verdict) fill() bool {
	if !validReplyText(v.Text) {
		return false
	}
	switch v.Kind {
	case Accept, Discard, Quarantine:
		return v.Code == 0 && v.Enhanced == ""
	case Reject:
		if v.Code == 0 {
			v.Code = 550
		}
		if v.Enhanced == "" {
			v.Enhanced = "5.7.1"
		}
		return v.Code >= 500 && v.Code <= 599 && validEnhanced(v.Enhanced, '5')
	case Tempfail:
		if v.Code == 0 {
			v.Code = 451
		}
		if v.Enhanced == "" {
			v.Enhanced = "4.7.1"
		}
		return v.Code >= 400 && v.Code <= 499 && validEnhanced(v.Enhanced, '4')
	}
	return false
}

// validEnhanced checks an RFC 3463 status code class.subject.detail whose class is the given digit.
func validEnhanced(s string, class byte) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != string(class) {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 || (len(p) > 1 && p[0] == '0') {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

// validReplyText: at most 512 bytes of printable UTF-8 (tabs allowed, no other control characters: no CR/LF that
// could end the reply line and inject protocol).
func validReplyText(s string) bool {
	if len(s) > maxVerdictText || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

func tagAdd(f frame, s []uint64) int32 {
	key := f.in(uint32(s[0]), uint32(s[1]))
	val := f.in(uint32(s[2]), uint32(s[3]))
	st := f.st
	if st.init {
		return errUnavailable
	}
	if !validTagKey(key) || len(val) > maxTagValue || !utf8.Valid(val) {
		return errInvalid
	}
	if _, ok := st.tags[string(key)]; !ok && len(st.tags) >= maxTags {
		abort(ErrBudget, "tag budget exceeded (%d tags)", maxTags)
	}
	if st.tags == nil {
		st.tags = make(map[string]string)
	}
	st.tags[string(key)] = string(val)
	return 0
}

func validTagKey(k []byte) bool {
	if len(k) < 1 || len(k) > maxTagKey {
		return false
	}
	for _, c := range k {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

func scoreAdd(f frame, s []uint64) int32 {
	delta := api.DecodeF64(s[0])
	if f.st.init {
		return errUnavailable
	}
	sum := f.st.score + delta
	if math.IsNaN(delta) || math.IsInf(delta, 0) || math.IsInf(sum, 0) {
		return errInvalid
	}
	f.st.score = sum
	return 0
}

func logLine(f frame, s []uint64) int32 {
	level := int32(s[0])
	text := f.in(uint32(s[1]), uint32(s[2]))
	levels := [...]slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	f.st.addLog(levels[min(max(level, 0), 3)], text)
	return 0
}

// --- changing the message (ABI §3.6) ---

// changes returns the call's change list, or nil when changes are unavailable at this hook.
func (f frame) changes() *message.Changes {
	if f.message() == nil {
		return nil
	}
	return f.st.changeList()
}

// record applies one change method's outcome: ERR_INVALID when it refused, else the bytes count against the
// budget.
func (f frame) record(err error, n int) int32 {
	if err != nil {
		return errInvalid
	}
	f.st.changeBytes += n
	return 0
}

// recordChecked records one change made by add and checks, before answering, that the message can take it:
// a header change when the header was not indexed to its end (a limit stopped it) is ERR_INVALID, a banner for a
// body part that would have to be re-encoded but cannot be decoded is ERR_DECODE. A refused change is taken back,
// so the plugin can carry on without it, and nothing fails later when the message is written. Changes whose
// validity depends on the others (banners: their target part) are checked with the whole list, the rest alone,
// which costs a header parse rather than a pass over a body.
func (f frame) recordChecked(c *message.Changes, n int, add func(*message.Changes) error, whole bool) int32 {
	before := c.Len()
	if err := add(c); err != nil {
		return errInvalid
	}
	check := c
	if !whole {
		check = &message.Changes{}
		_ = add(check) // accepted just above
	}
	if err := f.message().Validate(check); err != nil {
		c.Truncate(before)
		if errors.Is(err, message.ErrDecode) {
			return errDecode
		}
		return errInvalid
	}
	f.st.changeBytes += n
	return 0
}

// headerValue bounds one header value (ABI §6: at most 64 KiB, else the call fails).
func headerValue(v []byte) {
	if len(v) > maxHeaderValue {
		abort(ErrBudget, "change budget exceeded (header value of %d bytes, at most %d)", len(v), maxHeaderValue)
	}
}

func headerAdd(f frame, s []uint64) int32 { return headerChange(f, s, (*message.Changes).AddHeader) }
func headerSet(f frame, s []uint64) int32 { return headerChange(f, s, (*message.Changes).SetHeader) }

func headerChange(f frame, s []uint64, op func(*message.Changes, string, string) error) int32 {
	name := f.in(uint32(s[0]), uint32(s[1]))
	value := f.in(uint32(s[2]), uint32(s[3]))
	c := f.changes()
	if c == nil {
		return errUnavailable
	}
	headerValue(value)
	n := len(name) + len(value)
	f.st.checkChange(n)
	return f.recordChecked(c, n, func(c *message.Changes) error { return op(c, string(name), string(value)) }, false)
}

func headerRemove(f frame, s []uint64) int32 {
	name := f.in(uint32(s[0]), uint32(s[1]))
	c := f.changes()
	if c == nil {
		return errUnavailable
	}
	f.st.checkChange(len(name))
	return f.recordChecked(c, len(name), func(c *message.Changes) error { return c.RemoveHeader(string(name)) }, false)
}

func subjectPrefix(f frame, s []uint64) int32 {
	prefix := f.in(uint32(s[0]), uint32(s[1]))
	c := f.changes()
	if c == nil {
		return errUnavailable
	}
	headerValue(prefix)
	f.st.checkChange(len(prefix))
	return f.recordChecked(c, len(prefix), func(c *message.Changes) error { return c.PrefixSubject(string(prefix)) }, false)
}

func bannerAdd(f frame, s []uint64) int32 {
	text := f.in(uint32(s[0]), uint32(s[1]))
	html := f.in(uint32(s[2]), uint32(s[3]))
	c := f.changes()
	if c == nil {
		return errUnavailable
	}
	n := len(text) + len(html)
	f.st.checkChange(n)
	// The banner's target depends on the parts removed or replaced so far, so the whole list is checked.
	return f.recordChecked(c, n, func(c *message.Changes) error { return c.AppendBanner(string(text), string(html)) }, true)
}

func partRemove(f frame, s []uint64) int32 {
	id := uint32(s[0])
	c := f.changes()
	if c == nil {
		return errUnavailable
	}
	if id == 0 || part(f.st.in.Msg, id) == nil {
		return errInvalid
	}
	f.st.checkChange(0)
	return f.recordChecked(c, 0, func(c *message.Changes) error { return c.RemovePart(int(id)) }, false)
}

func partReplace(f frame, s []uint64) int32 {
	id := uint32(s[0])
	ctype := f.in(uint32(s[1]), uint32(s[2]))
	data := f.in(uint32(s[3]), uint32(s[4]))
	c := f.changes()
	if c == nil {
		return errUnavailable
	}
	if p := part(f.st.in.Msg, id); p == nil || p.Multipart {
		return errInvalid
	}
	n := len(ctype) + len(data)
	f.st.checkChange(n)
	// data is a view of guest memory: the change must own its bytes.
	content := bytes.Clone(data)
	return f.recordChecked(c, n, func(c *message.Changes) error { return c.ReplacePart(int(id), string(ctype), content) }, false)
}

func rcptAdd(f frame, s []uint64) int32 {
	addr := f.in(uint32(s[0]), uint32(s[1]))
	st := f.st
	if st.init || st.hook == HookConnect {
		return errUnavailable
	}
	if field.FamilyOf(st.in.Env.Protocol) != field.Relay {
		return errUnavailable // a mailbox protocol has no envelope to add to
	}
	st.checkChange(len(addr))
	return f.record(st.changeList().AddRecipient(string(addr)), len(addr))
}
