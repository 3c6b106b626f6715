package config

import (
	"math/big"
	"net/netip"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/postern/postern/proxy/field"
)

// A fast path for `when`.
//
// Evaluating an expression through hcl costs microseconds: every operator is a cty function call with type
// checks, conversions, refinements and allocations. Policies are evaluated for every message (and every
// envelope stage), so a configuration of ten policies would spend tens of microseconds per message there. Most
// conditions are small: comparisons of msg attributes with constants, joined by && and ||, and calls of a few
// string, domain, CIDR and regex functions. Those are compiled at load into Go closures over the facts, which
// run in nanoseconds. Anything else (for expressions, arithmetic, indexing, other functions) is evaluated by hcl
// as before: compileFast returns nil and Eval falls back, for the whole condition.
//
// The closures must give exactly hcl's result. They differ in one way that cannot be observed: hcl evaluates
// both operands of && and || and the closures short-circuit, which only matters for an operand that fails, and
// every construct compiled here is one that cannot fail (constant patterns and CIDRs are validated at load).
// Strings are NFC-normalised like every cty string, so comparisons agree on decomposed Unicode too. The
// differential test in fast_test.go evaluates every supported construct both ways.

type (
	boolFn func(*Scope) bool
	strFn  func(*Scope) string
	numFn  func(*Scope) float64
	listFn func(*Scope) []string
)

// fexpr is a compiled sub-expression: exactly one of the functions is set, matching kind. null is set for an
// attribute that can be null (a fact not known at a hook): its value function must then be called only after
// null said false, or it bails out (see nullBail).
type fexpr struct {
	kind cty.Type
	b    boolFn
	s    strFn
	n    numFn
	l    listFn
	null boolFn
	// nullLit is the literal null, which only == and != take.
	nullLit bool
}

// effect evaluates the expression for its bail-out only.
func (fe fexpr) effect() func(*Scope) {
	switch {
	case fe.b != nil:
		return func(s *Scope) { fe.b(s) }
	case fe.s != nil:
		return func(s *Scope) { fe.s(s) }
	case fe.n != nil:
		return func(s *Scope) { fe.n(s) }
	case fe.l != nil:
		return func(s *Scope) { fe.l(s) }
	}
	return func(*Scope) {}
}

// tryBool evaluates a boolean operand; ok is false when it bailed out on a null.
func tryBool(f boolFn, s *Scope) (v, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, bail := r.(nullBail); !bail {
				panic(r)
			}
			ok = false
		}
	}()
	return f(s), true
}

// mayBeNull reports whether an expression reads a fact that can be null.
func mayBeNull(e hclsyntax.Expression) bool {
	for _, tr := range e.Variables() {
		if len(tr) < 2 || tr.RootName() != "msg" {
			continue
		}
		if attr, ok := tr[1].(hcl.TraverseAttr); ok && fastAttrs[attr.Name].null != nil {
			return true
		}
	}
	return false
}

// nullBail is the panic value of an attribute read that met a null where the fast path cannot follow hcl:
// anything but a comparison with == or != (where hcl's result is plain: null equals only null), for example a
// function argument, which is an error in hcl. Eval recovers it and evaluates the condition with hcl, which
// gives exactly hcl's answer, error included. Nulls are rare (a condition reading a fact at a hook where it
// is not known), so the fast path stays fast where it matters.
type nullBail struct{}

// tryFast runs the fast closure; ok is false when it bailed out on a null.
func (c *Condition) tryFast(s *Scope) (v, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, bail := r.(nullBail); !bail {
				panic(r)
			}
			ok = false
		}
	}()
	return c.fast(s), true
}

// norm is the facts as the msg object would present them: strings NFC-normalised, derived fields computed.
type norm struct {
	hook, protocol, listener, direction, clientIP, helo, tlsVersion, user string
	mailFrom, mailFromDomain, rcptCurrent, subject, from, fromDomain      string
	limitExceeded                                                         string
	tlsCipher, upstreamTLSVersion, upstreamTLSCipher                      string
	rcpt, rcptDomains, malformed, ambiguous                               []string
	mailboxUser, mailbox, uidl, internalDate, command                     string
	flags                                                                 []string
	uid, uidValidity                                                      float64
	size, attachments                                                     float64
	tls                                                                   bool
	nulls                                                                 uint64 // bit i: field.Table[i] is null
}

func (s *Scope) normalized() *norm {
	if s.norm != nil {
		return s.norm
	}
	f := s.facts
	n := &norm{
		hook: nfc(f.Hook), protocol: nfc(f.Protocol),
		listener: nfc(f.Listener), direction: nfc(f.Direction),
		clientIP: nfc(f.ClientIP), helo: nfc(f.HELO),
		tlsVersion: nfc(f.TLSVersion), user: nfc(f.User),
		mailFrom: nfc(f.MailFrom), mailFromDomain: nfc(addrDomain(f.MailFrom)),
		rcptCurrent: nfc(f.RcptCurrent), subject: nfc(f.Subject),
		from: nfc(f.From), fromDomain: nfc(addrDomain(f.From)),
		limitExceeded: nfc(f.LimitExceeded),
		tlsCipher:     nfc(f.TLSCipher), upstreamTLSVersion: nfc(f.UpstreamTLSVersion),
		upstreamTLSCipher: nfc(f.UpstreamTLSCipher),
		size:              float64(f.Size), tls: f.TLSVersion != "",
		rcpt: normalizeAll(f.Rcpt), rcptDomains: normalizeAll(rcptDomains(f.Rcpt)),
		malformed: normalizeAll(f.Malformed), ambiguous: normalizeAll(f.Ambiguous),
		attachments: float64(f.Attachments),
		mailboxUser: nfc(f.MailboxUser), mailbox: nfc(f.Mailbox),
		uidl: nfc(f.UIDL), internalDate: nfc(f.InternalDate),
		command: nfc(f.Command), flags: normalizeAll(f.Flags),
		uid: float64(f.UID), uidValidity: float64(f.UIDValidity),
	}
	h, fam := f.hook(), field.FamilyOf(f.Protocol)
	n.nulls = staticNulls[fam][h]
	for _, i := range optionalFacts {
		if fd := &field.Table[i]; fd.AvailableIn(fam, h) && !f.known(fd, fam, h) {
			n.nulls |= 1 << i
		}
	}
	s.norm = n
	return n
}

func normalizeAll(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = nfc(s)
	}
	return out
}

// nfc is cty.NormalizeString, without its cost for ASCII (most facts), which NFC leaves as it is.
func nfc(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return cty.NormalizeString(s)
		}
	}
	return s
}

// fastAttrs reads msg attributes from the normalised facts.
var fastAttrs = map[string]fexpr{
	"hook":                 strAttr(func(n *norm) string { return n.hook }),
	"protocol":             strAttr(func(n *norm) string { return n.protocol }),
	"listener":             strAttr(func(n *norm) string { return n.listener }),
	"direction":            strAttr(func(n *norm) string { return n.direction }),
	"client_ip":            strAttr(func(n *norm) string { return n.clientIP }),
	"helo":                 strAttr(func(n *norm) string { return n.helo }),
	"tls_version":          strAttr(func(n *norm) string { return n.tlsVersion }),
	"tls_cipher":           strAttr(func(n *norm) string { return n.tlsCipher }),
	"upstream_tls_version": strAttr(func(n *norm) string { return n.upstreamTLSVersion }),
	"upstream_tls_cipher":  strAttr(func(n *norm) string { return n.upstreamTLSCipher }),
	"user":                 strAttr(func(n *norm) string { return n.user }),
	"mail_from":            strAttr(func(n *norm) string { return n.mailFrom }),
	"mail_from_domain":     strAttr(func(n *norm) string { return n.mailFromDomain }),
	"rcpt_current":         strAttr(func(n *norm) string { return n.rcptCurrent }),
	"subject":              strAttr(func(n *norm) string { return n.subject }),
	"from":                 strAttr(func(n *norm) string { return n.from }),
	"from_domain":          strAttr(func(n *norm) string { return n.fromDomain }),
	"limit_exceeded":       strAttr(func(n *norm) string { return n.limitExceeded }),
	"mailbox_user":         strAttr(func(n *norm) string { return n.mailboxUser }),
	"mailbox":              strAttr(func(n *norm) string { return n.mailbox }),
	"uidl":                 strAttr(func(n *norm) string { return n.uidl }),
	"internal_date":        strAttr(func(n *norm) string { return n.internalDate }),
	"command":              strAttr(func(n *norm) string { return n.command }),
	"malformed":            listAttr(func(n *norm) []string { return n.malformed }),
	"rcpt":                 listAttr(func(n *norm) []string { return n.rcpt }),
	"rcpt_domains":         listAttr(func(n *norm) []string { return n.rcptDomains }),
	"flags":                listAttr(func(n *norm) []string { return n.flags }),
	"ambiguous":            listAttr(func(n *norm) []string { return n.ambiguous }),
	"attachments":          numAttr(func(n *norm) float64 { return n.attachments }),
	"tls":                  {kind: cty.Bool, b: func(s *Scope) bool { return s.normalized().tls }},
	"size":                 numAttr(func(n *norm) float64 { return n.size }),
	"uid":                  numAttr(func(n *norm) float64 { return n.uid }),
	"uidvalidity":          numAttr(func(n *norm) float64 { return n.uidValidity }),
}

// staticNulls are the facts null by protocol family and hook alone, as bits of field.Table rows; optionalFacts are
// the rows whose value can be unknown where they exist, which each message checks.
var staticNulls, optionalFacts = func() (m [field.NumFamilies][field.NumHooks]uint64, opt []int) {
	if len(field.Table) > 64 {
		panic("config: the field table has more than 64 rows; widen norm.nulls")
	}
	for i := range field.Table {
		fd := &field.Table[i]
		if fd.Fact == "" {
			continue
		}
		if fd.Optional {
			opt = append(opt, i)
		}
		for fam := range field.NumFamilies {
			for h := range field.NumHooks {
				if !fd.AvailableIn(fam, h) {
					m[fam][h] |= 1 << i
				}
			}
		}
	}
	return m, opt
}()

// attrNull reads whether a fact is null: one bit of the normalised facts, by the fact's row in the field table.
func attrNull(name string) boolFn {
	i := slices.IndexFunc(field.Table, func(f field.Field) bool { return f.Fact == name })
	if i < 0 || i >= 64 {
		panic("config: fact " + name + " has no null bit")
	}
	bit := uint64(1) << i
	return func(s *Scope) bool { return s.normalized().nulls&bit != 0 }
}

func strAttr(get func(*norm) string) fexpr {
	return fexpr{kind: cty.String, s: func(s *Scope) string { return get(s.normalized()) }}
}

func listAttr(get func(*norm) []string) fexpr {
	return fexpr{kind: cty.List(cty.String), l: func(s *Scope) []string { return get(s.normalized()) }}
}

func numAttr(get func(*norm) float64) fexpr {
	return fexpr{kind: cty.Number, n: func(s *Scope) float64 { return get(s.normalized()) }}
}

// nullable makes the reader of a fact that may be null bail out when it is, and tells fastBinary how to test
// it. Facts that are known everywhere (the field table says so) keep their plain reader.
func nullable(name string, fe fexpr) fexpr {
	fd, ok := field.Fact(name)
	if !ok || (fd.At == [field.NumFamilies]field.Hooks{field.Always, field.Always, field.Always} && !fd.Optional) {
		return fe
	}
	isNull := attrNull(name)
	fe.null = isNull
	bail := func(s *Scope) {
		if isNull(s) {
			panic(nullBail{})
		}
	}
	switch {
	case fe.s != nil:
		get := fe.s
		fe.s = func(s *Scope) string { bail(s); return get(s) }
	case fe.l != nil:
		get := fe.l
		fe.l = func(s *Scope) []string { bail(s); return get(s) }
	case fe.n != nil:
		get := fe.n
		fe.n = func(s *Scope) float64 { bail(s); return get(s) }
	case fe.b != nil:
		get := fe.b
		fe.b = func(s *Scope) bool { bail(s); return get(s) }
	}
	return fe
}

func init() {
	for name, fe := range fastAttrs {
		fastAttrs[name] = nullable(name, fe)
	}
}

// compileFast compiles a checked `when` into a closure, or returns nil when it uses something the fast path does
// not cover.
func (l *language) compileFast(expr hcl.Expression) boolFn {
	syn, ok := expr.(hclsyntax.Expression)
	if !ok {
		return nil
	}
	fe, ok := l.fast(syn)
	if !ok || fe.kind != cty.Bool {
		return nil
	}
	return fe.b
}

func (l *language) fast(e hclsyntax.Expression) (fexpr, bool) {
	switch e := e.(type) {
	case *hclsyntax.ParenthesesExpr:
		return l.fast(e.Expression)
	case *hclsyntax.LiteralValueExpr:
		if e.Val.IsNull() {
			return fexpr{kind: cty.DynamicPseudoType, nullLit: true}, true
		}
		return constant(e.Val)
	case *hclsyntax.TemplateExpr:
		if !e.IsStringLiteral() {
			return fexpr{}, false
		}
		v, diags := e.Value(nil)
		if diags.HasErrors() {
			return fexpr{}, false
		}
		return constant(v)
	case *hclsyntax.ScopeTraversalExpr:
		if len(e.Traversal) != 2 || e.Traversal.RootName() != "msg" {
			return fexpr{}, false
		}
		attr, ok := e.Traversal[1].(hcl.TraverseAttr)
		if !ok {
			return fexpr{}, false
		}
		fe, ok := fastAttrs[attr.Name]
		return fe, ok
	case *hclsyntax.UnaryOpExpr:
		if e.Op != hclsyntax.OpLogicalNot {
			return fexpr{}, false
		}
		x, ok := l.fast(e.Val)
		if !ok || x.kind != cty.Bool {
			return fexpr{}, false
		}
		return boolExpr(func(s *Scope) bool { return !x.b(s) }), true
	case *hclsyntax.BinaryOpExpr:
		return l.fastBinary(e)
	case *hclsyntax.ConditionalExpr:
		c, ok1 := l.fast(e.Condition)
		t, ok2 := l.fast(e.TrueResult)
		f, ok3 := l.fast(e.FalseResult)
		if !ok1 || !ok2 || !ok3 || c.kind != cty.Bool || t.kind != f.kind {
			return fexpr{}, false
		}
		switch t.kind {
		case cty.Bool:
			return boolExpr(func(s *Scope) bool {
				if c.b(s) {
					return t.b(s)
				}
				return f.b(s)
			}), true
		case cty.String:
			return strExpr(func(s *Scope) string {
				if c.b(s) {
					return t.s(s)
				}
				return f.s(s)
			}), true
		}
		return fexpr{}, false
	case *hclsyntax.FunctionCallExpr:
		if e.ExpandFinal {
			return fexpr{}, false
		}
		return l.fastCall(e)
	}
	return fexpr{}, false
}

func boolExpr(f boolFn) fexpr { return fexpr{kind: cty.Bool, b: f} }
func strExpr(f strFn) fexpr   { return fexpr{kind: cty.String, s: f} }

// constant compiles a literal. A number is taken only if a float64 holds it exactly, so comparisons agree with
// cty's arbitrary precision.
func constant(v cty.Value) (fexpr, bool) {
	if !v.IsWhollyKnown() || v.IsNull() {
		return fexpr{}, false
	}
	switch v.Type() {
	case cty.Bool:
		b := v.True()
		return boolExpr(func(*Scope) bool { return b }), true
	case cty.String:
		str := v.AsString()
		return strExpr(func(*Scope) string { return str }), true
	case cty.Number:
		f, acc := v.AsBigFloat().Float64()
		if acc != big.Exact {
			return fexpr{}, false
		}
		return fexpr{kind: cty.Number, n: func(*Scope) float64 { return f }}, true
	}
	return fexpr{}, false
}

func (l *language) fastBinary(e *hclsyntax.BinaryOpExpr) (fexpr, bool) {
	a, ok1 := l.fast(e.LHS)
	b, ok2 := l.fast(e.RHS)
	if !ok1 || !ok2 {
		return fexpr{}, false
	}
	switch e.Op {
	case hclsyntax.OpLogicalAnd, hclsyntax.OpLogicalOr:
		if a.kind != cty.Bool || b.kind != cty.Bool {
			return fexpr{}, false
		}
		and := e.Op == hclsyntax.OpLogicalAnd
		if mayBeNull(e.LHS) || mayBeNull(e.RHS) {
			// hcl evaluates both sides, and a side that decides (false for &&, true for ||) wins over an
			// error on the other side; an error with a side that does not decide is the result.
			return boolExpr(func(s *Scope) bool {
				av, aok := tryBool(a.b, s)
				if aok && av != and {
					return av
				}
				bv, bok := tryBool(b.b, s)
				if bok && bv != and {
					return bv
				}
				if !aok || !bok {
					panic(nullBail{})
				}
				return and
			}), true
		}
		if and {
			return boolExpr(func(s *Scope) bool { return a.b(s) && b.b(s) }), true
		}
		return boolExpr(func(s *Scope) bool { return a.b(s) || b.b(s) }), true
	case hclsyntax.OpEqual, hclsyntax.OpNotEqual:
		neg := e.Op == hclsyntax.OpNotEqual
		if a.nullLit || b.nullLit {
			if b.nullLit {
				a, b = b, a
			}
			// x == null: an attribute says whether it is null; anything else is never null in the fast
			// path (a null inside it bails out, as hcl fails there), but must be evaluated to know that.
			if b.nullLit {
				return boolExpr(func(*Scope) bool { return !neg }), true
			}
			if b.null != nil {
				isNull := b.null
				return boolExpr(func(s *Scope) bool { return isNull(s) != neg }), true
			}
			run := b.effect()
			return boolExpr(func(s *Scope) bool { run(s); return neg }), true
		}
		// cty's == is false for values of different types; only same-typed scalars are compiled.
		if a.kind != b.kind {
			return fexpr{}, false
		}
		if a.null != nil || b.null != nil {
			// hcl: null equals null and nothing else.
			eq, ok := l.fastEqual(a, b)
			if !ok {
				return fexpr{}, false
			}
			an, bn := a.null, b.null
			return boolExpr(func(s *Scope) bool {
				na, nb := an != nil && an(s), bn != nil && bn(s)
				if na || nb {
					return (na == nb) != neg
				}
				return eq(s) != neg
			}), true
		}
		switch a.kind {
		case cty.String:
			return boolExpr(func(s *Scope) bool { return (a.s(s) == b.s(s)) != neg }), true
		case cty.Bool:
			return boolExpr(func(s *Scope) bool { return (a.b(s) == b.b(s)) != neg }), true
		case cty.Number:
			return boolExpr(func(s *Scope) bool { return (a.n(s) == b.n(s)) != neg }), true
		}
		return fexpr{}, false
	case hclsyntax.OpGreaterThan, hclsyntax.OpGreaterThanOrEqual, hclsyntax.OpLessThan, hclsyntax.OpLessThanOrEqual:
		if a.kind != cty.Number || b.kind != cty.Number {
			return fexpr{}, false
		}
		switch e.Op {
		case hclsyntax.OpGreaterThan:
			return boolExpr(func(s *Scope) bool { return a.n(s) > b.n(s) }), true
		case hclsyntax.OpGreaterThanOrEqual:
			return boolExpr(func(s *Scope) bool { return a.n(s) >= b.n(s) }), true
		case hclsyntax.OpLessThan:
			return boolExpr(func(s *Scope) bool { return a.n(s) < b.n(s) }), true
		}
		return boolExpr(func(s *Scope) bool { return a.n(s) <= b.n(s) }), true
	}
	return fexpr{}, false
}

// nullMatchesNothing makes a pattern test false when the tested attribute is null, as the matching functions
// are (funcs.go): the value is read only when it is not null.
func nullMatchesNothing(x fexpr, f boolFn) boolFn {
	if x.null == nil {
		return f
	}
	isNull := x.null
	return func(s *Scope) bool { return !isNull(s) && f(s) }
}

// fastEqual compiles a == b for same-typed scalars, without the null handling.
func (l *language) fastEqual(a, b fexpr) (boolFn, bool) {
	switch a.kind {
	case cty.String:
		return func(s *Scope) bool { return a.s(s) == b.s(s) }, true
	case cty.Bool:
		return func(s *Scope) bool { return a.b(s) == b.b(s) }, true
	case cty.Number:
		return func(s *Scope) bool { return a.n(s) == b.n(s) }, true
	}
	return nil, false
}

// constStrings evaluates arguments that must be constant strings or lists of strings.
func constStrings(args []hclsyntax.Expression) ([]string, bool) {
	var out []string
	for _, a := range args {
		if len(a.Variables()) > 0 {
			return nil, false
		}
		v, diags := a.Value(nil)
		if diags.HasErrors() || !v.IsWhollyKnown() {
			return nil, false
		}
		ss, err := stringsOf([]cty.Value{v})
		if err != nil {
			return nil, false
		}
		out = append(out, ss...)
	}
	return out, true
}

func (l *language) fastCall(e *hclsyntax.FunctionCallExpr) (fexpr, bool) {
	args := make([]fexpr, 0, len(e.Args))
	argsOK := func(kinds ...cty.Type) bool {
		if len(e.Args) != len(kinds) {
			return false
		}
		for i, k := range kinds {
			a, ok := l.fast(e.Args[i])
			if !ok || a.kind != k {
				return false
			}
			args = append(args, a)
		}
		return true
	}
	str2 := func(f func(a, b string) bool) (fexpr, bool) {
		if !argsOK(cty.String, cty.String) {
			return fexpr{}, false
		}
		x, y := args[0].s, args[1].s
		return boolExpr(nullMatchesNothing(args[0], func(s *Scope) bool { return f(x(s), y(s)) })), true
	}
	switch e.Name {
	case "lower", "upper":
		if !argsOK(cty.String) {
			return fexpr{}, false
		}
		x, conv := args[0].s, strings.ToLower
		if e.Name == "upper" {
			conv = strings.ToUpper
		}
		return strExpr(func(s *Scope) string { return cty.NormalizeString(conv(x(s))) }), true
	case "startswith":
		return str2(strings.HasPrefix)
	case "endswith":
		return str2(strings.HasSuffix)
	case "strcontains":
		return str2(strings.Contains)
	case "glob":
		return str2(globMatch)
	case "contains":
		if !argsOK(cty.List(cty.String), cty.String) {
			return fexpr{}, false
		}
		list, x := args[0].l, args[1].s
		return boolExpr(func(s *Scope) bool { return slices.Contains(list(s), x(s)) }), true
	case "length":
		if !argsOK(cty.List(cty.String)) {
			return fexpr{}, false
		}
		list := args[0].l
		return fexpr{kind: cty.Number, n: func(s *Scope) float64 { return float64(len(list(s))) }}, true
	case "header":
		names, ok := constStrings(e.Args)
		if !ok || len(names) != 1 || len(e.Args) != 1 {
			return fexpr{}, false
		}
		name := names[0]
		return strExpr(func(s *Scope) string {
			if s.facts.Header == nil {
				return ""
			}
			if vs := s.facts.Header(name); len(vs) > 0 {
				return cty.NormalizeString(vs[0])
			}
			return ""
		}), true
	case "regex_match":
		if len(e.Args) != 2 {
			return fexpr{}, false
		}
		x, okx := l.fast(e.Args[0])
		if !okx || x.kind != cty.String || len(e.Args[1].Variables()) > 0 {
			return fexpr{}, false
		}
		pat, diags := e.Args[1].Value(nil)
		if diags.HasErrors() || !pat.IsKnown() || pat.IsNull() || pat.Type() != cty.String {
			return fexpr{}, false
		}
		re, ok := l.patterns[pat.AsString()]
		if !ok {
			return fexpr{}, false
		}
		return boolExpr(nullMatchesNothing(x, func(s *Scope) bool { return re.MatchString(x.s(s)) })), true
	case "cidrmatch":
		if len(e.Args) < 2 {
			return fexpr{}, false
		}
		cidrs, ok := constStrings(e.Args[1:])
		x, okx := l.fast(e.Args[0])
		if !ok || !okx || x.kind != cty.String {
			return fexpr{}, false
		}
		prefixes := make([]netip.Prefix, len(cidrs))
		for i, c := range cidrs {
			p, err := parsePrefix(c)
			if err != nil {
				return fexpr{}, false
			}
			prefixes[i] = p
		}
		return boolExpr(nullMatchesNothing(x, func(s *Scope) bool {
			addr, err := netip.ParseAddr(x.s(s))
			if err != nil {
				return false
			}
			addr = addr.Unmap()
			for _, p := range prefixes {
				if p.Contains(addr) {
					return true
				}
			}
			return false
		})), true
	case "domain_match":
		if len(e.Args) < 2 {
			return fexpr{}, false
		}
		pats, ok := constStrings(e.Args[1:])
		x, okx := l.fast(e.Args[0])
		if !ok || !okx || x.kind != cty.String {
			return fexpr{}, false
		}
		for _, p := range pats {
			if checkDomainPattern(p) != nil {
				return fexpr{}, false
			}
		}
		return boolExpr(nullMatchesNothing(x, func(s *Scope) bool { return domainMatch(x.s(s), pats) })), true
	}
	return fexpr{}, false
}
