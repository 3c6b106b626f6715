package config

import (
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"

	"github.com/postern/postern/proxy/field"
)

// msgAttrs is the schema of the `msg` variable a `when` expression sees: every policy fact of the field table
// (proxy/field). Every attribute is always present; one that is not known at the hook or in the protocol (HELO at
// connect, the envelope sender at retrieval) is null, never an empty value that a condition would match.
var msgAttrs = func() map[string]cty.Type {
	m := map[string]cty.Type{}
	for _, fd := range field.Table {
		if fd.Fact != "" {
			m[fd.Fact] = factType(fd.Type)
		}
	}
	return m
}()

func factType(t field.Type) cty.Type {
	switch t {
	case field.Number:
		return cty.Number
	case field.Bool:
		return cty.Bool
	case field.List:
		return cty.List(cty.String)
	}
	return cty.String
}

// MsgType is the cty type of the `msg` variable.
var MsgType = cty.Object(msgAttrs)

// Facts are what a `when` expression can see of one message or envelope stage. The policy engine fills them from
// the session; `postern explain` from its flags. Which facts are known is decided by Hook and Protocol with the
// field table, not by which fields are set: the others are null.
type Facts struct {
	Hook       string // "connect", "mail_from", "rcpt_to" or "message"
	Protocol   string // "smtp", "submission", "pop3" or "imap"
	Listener   string
	Direction  string // "inbound", "outbound" or "retrieval"
	ClientIP   string
	HELO       string
	TLSVersion string // "" when the client connection is not encrypted
	TLSCipher  string
	// UpstreamTLSVersion and UpstreamTLSCipher describe the connection to the upstream server ("" when it is
	// not encrypted).
	UpstreamTLSVersion, UpstreamTLSCipher string
	User                                  string // authenticated user, "" if none
	MailFrom                              string
	// NoMailFrom says that no MAIL FROM was given (yet) where one could have been, so msg.mail_from is null;
	// MailFrom "" is then not the null reverse path.
	NoMailFrom bool
	Rcpt       []string
	// RcptCurrent is the recipient being decided at the rcpt_to hook.
	RcptCurrent string
	// The mailbox (POP3 and IMAP). A zero UID or UIDValidity, an empty UIDL or InternalDate mean "not known".
	MailboxUser, Mailbox string
	UID, UIDValidity     uint32
	UIDL                 string
	InternalDate         string // RFC 3339, UTC
	Flags                []string
	Command              string // "retr", "top", "fetch" or "append"
	Size                 int64  // message hook only
	Subject              string // decoded; message hook only
	// From is the address in the From header (not the display name); message hook only.
	From string
	// Malformed lists the distinct kinds of the message's defects ("unclosed-boundary", "depth-limit", ...), in
	// the order found; LimitExceeded is the limit that stopped indexing, or "". Message hook only.
	Malformed     []string
	LimitExceeded string
	// Ambiguous lists the distinct kinds of the places where mail clients read the message differently
	// ("duplicate-parameter", "boundary-choice", ...), in the order found. Message hook only.
	Ambiguous []string
	// Attachments counts the parts a mail client shows as files (named, attachment disposition, non-text, or
	// found inside another part), every reading included. Message hook only.
	Attachments int
	// Header returns every value of a message header field, unfolded, trimmed and RFC 2047 decoded; nil outside
	// the message hook, where header() is always "".
	Header func(name string) []string
}

// hook is the facts' hook for the field table; an unknown name counts as the message hook, where the most is
// known.
func (f *Facts) hook() field.Hook {
	for h := range field.NumHooks {
		if h.String() == f.Hook {
			return h
		}
	}
	return field.Message
}

// known reports whether the fact is known for these facts (else it is null).
func (f *Facts) known(fd *field.Field, fam field.Family, h field.Hook) bool {
	if !fd.AvailableIn(fam, h) {
		return false
	}
	if !fd.Optional {
		return true
	}
	switch fd.Fact {
	case "mail_from", "mail_from_domain":
		return !f.NoMailFrom
	case "uid":
		return f.UID != 0
	case "uidvalidity":
		return f.UIDValidity != 0
	case "uidl":
		return f.UIDL != ""
	case "internal_date":
		return f.InternalDate != ""
	}
	return true
}

// value builds the `msg` object.
func (f *Facts) value() cty.Value {
	vals := map[string]cty.Value{
		"hook":                 cty.StringVal(f.Hook),
		"protocol":             cty.StringVal(f.Protocol),
		"listener":             cty.StringVal(f.Listener),
		"direction":            cty.StringVal(f.Direction),
		"client_ip":            cty.StringVal(f.ClientIP),
		"helo":                 cty.StringVal(f.HELO),
		"tls":                  cty.BoolVal(f.TLSVersion != ""),
		"tls_version":          cty.StringVal(f.TLSVersion),
		"tls_cipher":           cty.StringVal(f.TLSCipher),
		"upstream_tls_version": cty.StringVal(f.UpstreamTLSVersion),
		"upstream_tls_cipher":  cty.StringVal(f.UpstreamTLSCipher),
		"user":                 cty.StringVal(f.User),
		"mail_from":            cty.StringVal(f.MailFrom),
		"mail_from_domain":     cty.StringVal(addrDomain(f.MailFrom)),
		"rcpt":                 stringList(f.Rcpt),
		"rcpt_domains":         stringList(rcptDomains(f.Rcpt)),
		"rcpt_current":         cty.StringVal(f.RcptCurrent),
		"mailbox_user":         cty.StringVal(f.MailboxUser),
		"mailbox":              cty.StringVal(f.Mailbox),
		"uid":                  cty.NumberUIntVal(uint64(f.UID)),
		"uidvalidity":          cty.NumberUIntVal(uint64(f.UIDValidity)),
		"uidl":                 cty.StringVal(f.UIDL),
		"internal_date":        cty.StringVal(f.InternalDate),
		"flags":                stringList(f.Flags),
		"command":              cty.StringVal(f.Command),
		"size":                 cty.NumberIntVal(f.Size),
		"subject":              cty.StringVal(f.Subject),
		"from":                 cty.StringVal(f.From),
		"from_domain":          cty.StringVal(addrDomain(f.From)),
		"malformed":            stringList(f.Malformed),
		"limit_exceeded":       cty.StringVal(f.LimitExceeded),
		"ambiguous":            stringList(f.Ambiguous),
		"attachments":          cty.NumberIntVal(int64(f.Attachments)),
	}
	h, fam := f.hook(), field.FamilyOf(f.Protocol)
	for name, v := range vals {
		if fd, ok := field.Fact(name); ok && !f.known(fd, fam, h) {
			vals[name] = cty.NullVal(v.Type())
		}
	}
	return cty.ObjectVal(vals)
}

func stringList(ss []string) cty.Value {
	if len(ss) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	vs := make([]cty.Value, len(ss))
	for i, s := range ss {
		vs[i] = cty.StringVal(s)
	}
	return cty.ListVal(vs)
}

// rcptDomains is msg.rcpt_domains: the recipients' domains, lower-case, sorted, each once.
func rcptDomains(rcpt []string) []string {
	var ds []string
	for _, r := range rcpt {
		if d := addrDomain(r); d != "" && !slices.Contains(ds, d) {
			ds = append(ds, d)
		}
	}
	slices.Sort(ds)
	return ds
}

// addrDomain is the lower-case domain of an address ("" if it has none), without a trailing dot.
func addrDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(addr[i+1:])), ".")
}

// FromAddress extracts the address from a From header value ("Alice <a@example.com>" → "a@example.com"). A
// value net/mail cannot parse yields its last <...> or the trimmed value, so a malformed header still gives
// conditions something to match.
func FromAddress(v string) string {
	if a, err := mail.ParseAddress(v); err == nil {
		return a.Address
	}
	if l, err := mail.ParseAddressList(v); err == nil && len(l) > 0 {
		return l[0].Address
	}
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return strings.TrimSpace(v[i+1 : i+j])
		}
	}
	return strings.TrimSpace(v)
}

// Condition is a policy's compiled `when` expression.
type Condition struct {
	expr hcl.Expression
	text string
	lang *language
	fast boolFn // nil: evaluate with hcl
}

// String returns the expression's source text.
func (c *Condition) String() string { return c.text }

// Range is where the expression is written.
func (c *Condition) Range() hcl.Range { return c.expr.Range() }

// Scope holds one message's facts for evaluating conditions. Build one per message (or envelope stage) and
// evaluate every policy's condition against it: the `msg` object is built once, on first use. A Scope is not safe
// for concurrent use.
type Scope struct {
	facts *Facts
	norm  *norm // for compiled conditions, made on first use
	lang  *language
	ctx   *hcl.EvalContext // for hcl evaluation, made on first use
}

// NewScope returns a scope over f. The scope keeps f; do not change it while the scope is in use.
func NewScope(f *Facts) *Scope { return &Scope{facts: f} }

// Eval evaluates the condition against the scope's facts. An error (for example regex() finding no match, or a
// non-boolean result) names the expression's file:line:col.
func (c *Condition) Eval(s *Scope) (bool, error) {
	if c.fast != nil {
		if v, ok := c.tryFast(s); ok {
			return v, nil
		}
	}
	return c.evalHCL(s)
}

func (c *Condition) evalHCL(s *Scope) (bool, error) {
	if s.ctx == nil || s.lang != c.lang {
		s.ctx = c.lang.scopeContext(s.facts)
		s.lang = c.lang
	}
	v, diags := c.expr.Value(s.ctx)
	if diags.HasErrors() {
		return false, diagsError(diags)
	}
	if v.IsNull() || !v.IsKnown() {
		return false, fmt.Errorf("%s: when produced no value", position(c.Range().Ptr()))
	}
	if v.Type() != cty.Bool {
		return false, fmt.Errorf("%s: when produced a %s, not a bool", position(c.Range().Ptr()), v.Type().FriendlyName())
	}
	return v.True(), nil
}

func diagsError(diags hcl.Diagnostics) error {
	var errs []error
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs = append(errs, errors.New(DiagnosticLine(d)))
		}
	}
	return errors.Join(errs...)
}

// compileWhen checks a `when` expression at load time and returns its condition, or diagnostics.
//
// hcl's && and || short-circuit on a known operand and drop the other side's diagnostics, so evaluating with
// real values would hide a misspelt attribute behind `msg.size > 10 && msg.sise > 1` until the day the left side
// is true. Evaluating with msg unknown is not enough either: when both operands are unknown, && keeps only the
// left one's diagnostics. So: every variable reference is resolved against the msg schema statically, every
// function call names a known function with valid constant arguments (patterns are compiled here, once), the
// whole expression is evaluated with msg unknown, and so is each operand of every && and || on its own.
func (l *language) compileWhen(attr *hcl.Attribute, src []byte) (*Condition, hcl.Diagnostics) {
	expr := attr.Expr
	var diags hcl.Diagnostics
	for _, tr := range expr.Variables() {
		diags = append(diags, checkTraversal(tr)...)
	}
	if syn, ok := expr.(hclsyntax.Expression); ok {
		diags = append(diags, l.checkCalls(syn)...)
	}
	if diags.HasErrors() {
		return nil, diags
	}
	v, vd := expr.Value(l.check)
	if syn, ok := expr.(hclsyntax.Expression); ok {
		vd = append(vd, l.checkOperands(syn)...)
	}
	vd = dedupe(vd)
	diags = append(diags, vd...)
	if vd.HasErrors() {
		return nil, diags
	}
	switch {
	case v.Type() == cty.DynamicPseudoType:
		// try() and friends hide the type until run time; Eval checks it then.
	case v.Type() != cty.Bool:
		return nil, append(diags, errorf(expr.Range(), "when is not a boolean",
			"A when expression must be true or false; this one is a %s.", v.Type().FriendlyName()))
	case v.IsKnown() && !v.IsNull():
		diags = append(diags, warnf(expr.Range(), "when is constant",
			"This when expression is always %t: it does not depend on msg.", v.True()))
	}
	rng := expr.Range()
	text := ""
	if rng.Start.Byte >= 0 && rng.End.Byte <= len(src) && rng.Start.Byte <= rng.End.Byte {
		text = string(src[rng.Start.Byte:rng.End.Byte])
	}
	return &Condition{expr: expr, text: text, lang: l, fast: l.compileFast(expr)}, diags
}

// checkOperands evaluates each operand of every && and || separately (with msg unknown), collecting the
// diagnostics that the operators drop. Operands inside a for expression (which binds its own variables) or
// inside can() and try() (whose purpose is to absorb errors) are left alone.
func (l *language) checkOperands(expr hclsyntax.Expression) hcl.Diagnostics {
	w := &operandChecker{ctx: l.check}
	hclsyntax.Walk(expr, w)
	return w.diags
}

type operandChecker struct {
	ctx     *hcl.EvalContext
	shelter int // depth inside for expressions, can() and try()
	diags   hcl.Diagnostics
}

func sheltering(n hclsyntax.Node) bool {
	switch e := n.(type) {
	case *hclsyntax.ForExpr:
		return true
	case *hclsyntax.FunctionCallExpr:
		return e.Name == "can" || e.Name == "try"
	}
	return false
}

func (w *operandChecker) Enter(n hclsyntax.Node) hcl.Diagnostics {
	if sheltering(n) {
		w.shelter++
	}
	if op, ok := n.(*hclsyntax.BinaryOpExpr); ok && w.shelter == 0 &&
		(op.Op == hclsyntax.OpLogicalAnd || op.Op == hclsyntax.OpLogicalOr) {
		for _, side := range []hclsyntax.Expression{op.LHS, op.RHS} {
			if _, d := side.Value(w.ctx); d.HasErrors() {
				w.diags = append(w.diags, d...)
			}
		}
	}
	return nil
}

func (w *operandChecker) Exit(n hclsyntax.Node) hcl.Diagnostics {
	if sheltering(n) {
		w.shelter--
	}
	return nil
}

// dedupe drops repeated diagnostics (same severity, place and text), which the operand checks produce.
func dedupe(diags hcl.Diagnostics) hcl.Diagnostics {
	type key struct {
		sev             hcl.DiagnosticSeverity
		summary, detail string
		rng             hcl.Range
	}
	seen := map[key]bool{}
	out := diags[:0:0]
	for _, d := range diags {
		k := key{sev: d.Severity, summary: d.Summary, detail: d.Detail}
		if d.Subject != nil {
			k.rng = *d.Subject
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	return out
}

// checkTraversal resolves one variable reference against the msg schema.
func checkTraversal(tr hcl.Traversal) hcl.Diagnostics {
	root := tr.RootName()
	if root != "msg" {
		return hcl.Diagnostics{errorf(tr.SourceRange(), "Unknown variable",
			"There is no variable named %q; a when expression sees only msg (for example msg.rcpt_domains).", root)}
	}
	if len(tr) < 2 {
		return nil
	}
	var name string
	switch step := tr[1].(type) {
	case hcl.TraverseAttr:
		name = step.Name
	case hcl.TraverseIndex:
		if step.Key.Type() != cty.String || !step.Key.IsKnown() {
			return nil // evaluation reports a bad index
		}
		name = step.Key.AsString()
	default:
		return nil
	}
	if _, ok := msgAttrs[name]; ok {
		return nil
	}
	detail := fmt.Sprintf("msg has no attribute %q.", name)
	if s := suggest(name, keys(msgAttrs)); s != "" {
		detail += fmt.Sprintf(" Did you mean %q?", s)
	}
	return hcl.Diagnostics{errorf(tr[1].SourceRange(), "Unsupported attribute", "%s", detail)}
}

// checkCalls walks the syntax tree: every function must exist, and the constant arguments that are patterns are
// validated and compiled now, so that a typo is a load error and a message never pays for a compilation.
func (l *language) checkCalls(expr hclsyntax.Expression) hcl.Diagnostics {
	var diags hcl.Diagnostics
	hclsyntax.VisitAll(expr, func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok {
			return nil
		}
		if _, ok := l.funcs[call.Name]; !ok && call.Name != "header" && call.Name != "headers" {
			detail := fmt.Sprintf("There is no function named %q.", call.Name)
			if s := suggest(call.Name, l.funcNames()); s != "" {
				detail += fmt.Sprintf(" Did you mean %q?", s)
			}
			diags = append(diags, errorf(call.NameRange, "Call to unknown function", "%s", detail))
			return nil
		}
		for i, arg := range call.Args {
			check := l.constArgCheck(call.Name, i)
			if check == nil || len(arg.Variables()) > 0 {
				continue
			}
			v, vd := arg.Value(l.base)
			if vd.HasErrors() {
				continue // reported by the evaluation
			}
			diags = append(diags, checkConst(v, arg.Range(), check)...)
		}
		return nil
	})
	return diags
}

// checkConst applies check to a constant argument, or to each element of a constant list of them.
func checkConst(v cty.Value, rng hcl.Range, check func(string) error) hcl.Diagnostics {
	if !v.IsWhollyKnown() || v.IsNull() {
		return nil
	}
	var diags hcl.Diagnostics
	if v.Type().IsListType() || v.Type().IsSetType() || v.Type().IsTupleType() {
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			diags = append(diags, checkConst(e, rng, check)...)
		}
		return diags
	}
	if v.Type() != cty.String {
		return nil // evaluation reports the type
	}
	if err := check(v.AsString()); err != nil {
		diags = append(diags, errorf(rng, "Invalid function argument", "%s", err))
	}
	return diags
}

// suggest returns the candidate closest to name, if it is a plausible typo.
func suggest(name string, candidates []string) string {
	// Allow one edit per three characters (at least one), so "sise" suggests "size" but "nope" not "gone".
	best, bestD := "", max(1, len(name)/3)+1
	for _, c := range candidates {
		if d := editDistance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// headerFuncs are header() and headers() over one message's facts.
func headerFuncs(f *Facts) (header, headers function.Function) {
	lookup := func(name string) []string {
		if f == nil || f.Header == nil {
			return nil
		}
		return f.Header(name)
	}
	header = function.New(&function.Spec{
		Description: "The first value of a message header field, or \"\" if absent.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if vs := lookup(args[0].AsString()); len(vs) > 0 {
				return cty.StringVal(vs[0]), nil
			}
			return cty.StringVal(""), nil
		},
	})
	headers = function.New(&function.Spec{
		Description: "Every value of a message header field, top to bottom.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		Type:        function.StaticReturnType(cty.List(cty.String)),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			vs := lookup(args[0].AsString())
			if len(vs) == 0 {
				return cty.ListValEmpty(cty.String), nil
			}
			out := make([]cty.Value, len(vs))
			for i, v := range vs {
				out[i] = cty.StringVal(v)
			}
			return cty.ListVal(out), nil
		},
	})
	return header, headers
}

// unknownHeaderFuncs stand in for header()/headers() while type-checking: their result is unknown, like msg.
var unknownHeader, unknownHeaders = func() (function.Function, function.Function) {
	mk := func(ret cty.Type) function.Function {
		return function.New(&function.Spec{
			Params:       []function.Parameter{{Name: "name", Type: cty.String, AllowUnknown: true}},
			Type:         function.StaticReturnType(ret),
			Impl:         func([]cty.Value, cty.Type) (cty.Value, error) { return cty.UnknownVal(ret), nil },
			RefineResult: func(b *cty.RefinementBuilder) *cty.RefinementBuilder { return b.NotNull() },
		})
	}
	return mk(cty.String), mk(cty.List(cty.String))
}()

// scopeContext is the evaluation context for one message: msg and header functions over f, the language's
// functions from the parent.
func (l *language) scopeContext(f *Facts) *hcl.EvalContext {
	ctx := l.base.NewChild()
	ctx.Variables = map[string]cty.Value{"msg": f.value()}
	h, hs := headerFuncs(f)
	ctx.Functions = map[string]function.Function{"header": h, "headers": hs}
	return ctx
}
