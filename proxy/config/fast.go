package config

import (
	"math/big"
	"net/netip"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
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

// fexpr is a compiled sub-expression: exactly one of the functions is set, matching kind.
type fexpr struct {
	kind cty.Type
	b    boolFn
	s    strFn
	n    numFn
	l    listFn
}

// norm is the facts as the msg object would present them: strings NFC-normalised, derived fields computed.
type norm struct {
	hook, protocol, listener, direction, clientIP, helo, tlsVersion, user string
	mailFrom, mailFromDomain, rcptCurrent, subject, from, fromDomain      string
	limitExceeded                                                         string
	tlsCipher, upstreamTLSVersion, upstreamTLSCipher                      string
	rcpt, rcptDomains, malformed, ambiguous                               []string
	size, attachments                                                     float64
	tls                                                                   bool
}

func (s *Scope) normalized() *norm {
	if s.norm != nil {
		return s.norm
	}
	f := s.facts
	n := &norm{
		hook: cty.NormalizeString(f.Hook), protocol: cty.NormalizeString(f.Protocol),
		listener: cty.NormalizeString(f.Listener), direction: cty.NormalizeString(f.Direction),
		clientIP: cty.NormalizeString(f.ClientIP), helo: cty.NormalizeString(f.HELO),
		tlsVersion: cty.NormalizeString(f.TLSVersion), user: cty.NormalizeString(f.User),
		mailFrom: cty.NormalizeString(f.MailFrom), mailFromDomain: cty.NormalizeString(addrDomain(f.MailFrom)),
		rcptCurrent: cty.NormalizeString(f.RcptCurrent), subject: cty.NormalizeString(f.Subject),
		from: cty.NormalizeString(f.From), fromDomain: cty.NormalizeString(addrDomain(f.From)),
		limitExceeded: cty.NormalizeString(f.LimitExceeded),
		tlsCipher:     cty.NormalizeString(f.TLSCipher), upstreamTLSVersion: cty.NormalizeString(f.UpstreamTLSVersion),
		upstreamTLSCipher: cty.NormalizeString(f.UpstreamTLSCipher),
		size:              float64(f.Size), tls: f.TLSVersion != "",
		rcpt: normalizeAll(f.Rcpt), rcptDomains: normalizeAll(rcptDomains(f.Rcpt)),
		malformed: normalizeAll(f.Malformed), ambiguous: normalizeAll(f.Ambiguous),
		attachments: float64(f.Attachments),
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
		out[i] = cty.NormalizeString(s)
	}
	return out
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
	"malformed":            {kind: cty.List(cty.String), l: func(s *Scope) []string { return s.normalized().malformed }},
	"ambiguous":            {kind: cty.List(cty.String), l: func(s *Scope) []string { return s.normalized().ambiguous }},
	"attachments":          {kind: cty.Number, n: func(s *Scope) float64 { return s.normalized().attachments }},
	"tls":                  {kind: cty.Bool, b: func(s *Scope) bool { return s.normalized().tls }},
	"size":                 {kind: cty.Number, n: func(s *Scope) float64 { return s.normalized().size }},
	"rcpt":                 {kind: cty.List(cty.String), l: func(s *Scope) []string { return s.normalized().rcpt }},
	"rcpt_domains":         {kind: cty.List(cty.String), l: func(s *Scope) []string { return s.normalized().rcptDomains }},
}

func strAttr(get func(*norm) string) fexpr {
	return fexpr{kind: cty.String, s: func(s *Scope) string { return get(s.normalized()) }}
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
		if e.Op == hclsyntax.OpLogicalAnd {
			return boolExpr(func(s *Scope) bool { return a.b(s) && b.b(s) }), true
		}
		return boolExpr(func(s *Scope) bool { return a.b(s) || b.b(s) }), true
	case hclsyntax.OpEqual, hclsyntax.OpNotEqual:
		// cty's == is false for values of different types; only same-typed scalars are compiled.
		if a.kind != b.kind {
			return fexpr{}, false
		}
		neg := e.Op == hclsyntax.OpNotEqual
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
		return boolExpr(func(s *Scope) bool { return f(x(s), y(s)) }), true
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
		return boolExpr(func(s *Scope) bool { return re.MatchString(x.s(s)) }), true
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
		return boolExpr(func(s *Scope) bool {
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
		}), true
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
		return boolExpr(func(s *Scope) bool { return domainMatch(x.s(s), pats) }), true
	}
	return fexpr{}, false
}
