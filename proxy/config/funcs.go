package config

import (
	"fmt"
	"net/netip"
	"regexp"
	resyntax "regexp/syntax"
	"slices"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// language is the set of functions a configuration's `when` expressions may call, with the regular expressions
// they use. One per loaded configuration, so a reload never sees another configuration's patterns.
type language struct {
	funcs map[string]function.Function
	base  *hcl.EvalContext // functions only
	check *hcl.EvalContext // child of base: msg unknown, for type-checking at load
	// patterns holds every regular expression that is a constant in some `when`, compiled while loading. It is
	// written only before the configuration is returned by Load and only read afterwards, so evaluations share it
	// without a lock. A pattern computed from the message is compiled on every call instead: caching those would
	// let senders grow the cache without bound.
	patterns map[string]*regexp.Regexp
	frozen   bool
	compiles atomic.Int64 // regexp compilations, for tests
}

func newLanguage() *language {
	l := &language{patterns: map[string]*regexp.Regexp{}}
	l.funcs = map[string]function.Function{
		// Strings.
		"lower":       stdlib.LowerFunc,
		"upper":       stdlib.UpperFunc,
		"title":       stdlib.TitleFunc,
		"strlen":      stdlib.StrlenFunc,
		"substr":      stdlib.SubstrFunc,
		"join":        stdlib.JoinFunc,
		"split":       stdlib.SplitFunc,
		"replace":     stdlib.ReplaceFunc,
		"trim":        stdlib.TrimFunc,
		"trimspace":   stdlib.TrimSpaceFunc,
		"trimprefix":  stdlib.TrimPrefixFunc,
		"trimsuffix":  stdlib.TrimSuffixFunc,
		"chomp":       stdlib.ChompFunc,
		"format":      stdlib.FormatFunc,
		"formatlist":  stdlib.FormatListFunc,
		"startswith":  startsWithFunc,
		"endswith":    endsWithFunc,
		"strcontains": strContainsFunc,
		// Collections.
		"contains":        stdlib.ContainsFunc,
		"length":          stdlib.LengthFunc,
		"coalesce":        stdlib.CoalesceFunc,
		"coalescelist":    stdlib.CoalesceListFunc,
		"compact":         stdlib.CompactFunc,
		"concat":          stdlib.ConcatFunc,
		"distinct":        stdlib.DistinctFunc,
		"element":         stdlib.ElementFunc,
		"flatten":         stdlib.FlattenFunc,
		"index":           stdlib.IndexFunc,
		"keys":            stdlib.KeysFunc,
		"values":          stdlib.ValuesFunc,
		"lookup":          stdlib.LookupFunc,
		"merge":           stdlib.MergeFunc,
		"reverse":         stdlib.ReverseListFunc,
		"slice":           stdlib.SliceFunc,
		"sort":            stdlib.SortFunc,
		"setintersection": stdlib.SetIntersectionFunc,
		"setunion":        stdlib.SetUnionFunc,
		"setsubtract":     stdlib.SetSubtractFunc,
		// Numbers.
		"abs":      stdlib.AbsoluteFunc,
		"ceil":     stdlib.CeilFunc,
		"floor":    stdlib.FloorFunc,
		"max":      stdlib.MaxFunc,
		"min":      stdlib.MinFunc,
		"parseint": stdlib.ParseIntFunc,
		"signum":   stdlib.SignumFunc,
		// Conversions and encodings.
		"tobool":     stdlib.MakeToFunc(cty.Bool),
		"tonumber":   stdlib.MakeToFunc(cty.Number),
		"tostring":   stdlib.MakeToFunc(cty.String),
		"tolist":     stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"toset":      stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"jsondecode": stdlib.JSONDecodeFunc,
		"jsonencode": stdlib.JSONEncodeFunc,
		// Errors.
		"can": tryfunc.CanFunc,
		"try": tryfunc.TryFunc,
		// Mail.
		"cidrmatch":    cidrMatchFunc,
		"domain_match": domainMatchFunc,
		"glob":         globFunc,
		// Regular expressions, with the language's pattern cache.
		"regex":         l.regexFunc(false),
		"regexall":      l.regexFunc(true),
		"regex_match":   l.regexMatchFunc(),
		"regex_replace": l.regexReplaceFunc(),
	}
	l.base = &hcl.EvalContext{Functions: l.funcs}
	l.check = l.base.NewChild()
	l.check.Variables = map[string]cty.Value{"msg": cty.UnknownVal(MsgType).RefineNotNull()}
	l.check.Functions = map[string]function.Function{"header": unknownHeader, "headers": unknownHeaders}
	return l
}

func (l *language) funcNames() []string {
	return append(keys(l.funcs), "header", "headers")
}

// constArgCheck returns the load-time check for argument i of function name, or nil if it has none.
func (l *language) constArgCheck(name string, i int) func(string) error {
	switch {
	case (name == "regex" || name == "regexall") && i == 0,
		(name == "regex_match" || name == "regex_replace") && i == 1:
		return func(p string) error { _, err := l.compile(p); return err }
	case name == "cidrmatch" && i > 0:
		return func(s string) error { _, err := parsePrefix(s); return err }
	case name == "domain_match" && i > 0:
		return checkDomainPattern
	}
	return nil
}

// compile returns the compiled pattern: from the cache, or compiled now (and cached while loading).
func (l *language) compile(pattern string) (*regexp.Regexp, error) {
	if re, ok := l.patterns[pattern]; ok {
		return re, nil
	}
	l.compiles.Add(1)
	re, err := regexp.Compile(pattern)
	if err != nil {
		var se *resyntax.Error
		if ok := asSyntaxError(err, &se); ok {
			return nil, fmt.Errorf("invalid regular expression %q: %s in %q", pattern, se.Code, se.Expr)
		}
		return nil, fmt.Errorf("invalid regular expression %q: %v", pattern, err)
	}
	if !l.frozen {
		l.patterns[pattern] = re
	}
	return re, nil
}

func asSyntaxError(err error, target **resyntax.Error) bool {
	se, ok := err.(*resyntax.Error)
	if ok {
		*target = se
	}
	return ok
}

// matchFunc2 is a function testing a string against a pattern: a null string (a fact not known at this
// hook or in this protocol, such as msg.mail_from at retrieval) matches nothing, rather than failing the
// condition.
func matchFunc2(desc, p0, p1 string, impl func(a, b string) (cty.Value, error)) function.Function {
	return function.New(&function.Spec{
		Description: desc,
		Params: []function.Parameter{{Name: p0, Type: cty.String, AllowNull: true},
			{Name: p1, Type: cty.String}},
		Type: function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if args[0].IsNull() {
				return cty.False, nil
			}
			return impl(args[0].AsString(), args[1].AsString())
		},
		RefineResult: func(b *cty.RefinementBuilder) *cty.RefinementBuilder { return b.NotNull() },
	})
}

var startsWithFunc = matchFunc2("Whether the string starts with the prefix.", "string", "prefix",
	func(s, p string) (cty.Value, error) { return cty.BoolVal(strings.HasPrefix(s, p)), nil })

var endsWithFunc = matchFunc2("Whether the string ends with the suffix.", "string", "suffix",
	func(s, p string) (cty.Value, error) { return cty.BoolVal(strings.HasSuffix(s, p)), nil })

var strContainsFunc = matchFunc2("Whether the string contains the substring.", "string", "substr",
	func(s, p string) (cty.Value, error) { return cty.BoolVal(strings.Contains(s, p)), nil })

var globFunc = matchFunc2("Whether the string matches the glob pattern: * is any run of characters, ? one "+
	"character, \\ escapes the next one. Case-sensitive.", "string", "pattern",
	func(s, p string) (cty.Value, error) { return cty.BoolVal(globMatch(s, p)), nil })

// globMatch matches with the classic single-backtrack algorithm: linear in practice and O(len(s)*len(p)) at
// worst, never exponential, because a sender controls s.
func globMatch(s, p string) bool {
	si, pi := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			pc, pw := utf8.DecodeRuneInString(p[pi:])
			switch pc {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				_, sw := utf8.DecodeRuneInString(s[si:])
				si += sw
				pi++
				continue
			case '\\':
				if pi+1 < len(p) {
					pi++
					pc, pw = utf8.DecodeRuneInString(p[pi:])
				}
			}
			sc, sw := utf8.DecodeRuneInString(s[si:])
			if pc == sc {
				si += sw
				pi += pw
				continue
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last star swallow one more character and retry from there.
		_, sw := utf8.DecodeRuneInString(s[starS:])
		starS += sw
		si, pi = starS, starP+1
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// stringsOf flattens a function's variadic string-or-list arguments.
func stringsOf(args []cty.Value) ([]string, error) {
	var out []string
	for _, a := range args {
		switch {
		case a.IsNull():
			return nil, fmt.Errorf("argument must not be null")
		case a.Type() == cty.String:
			out = append(out, a.AsString())
		case a.Type().IsListType() || a.Type().IsSetType() || a.Type().IsTupleType():
			for it := a.ElementIterator(); it.Next(); {
				_, e := it.Element()
				if e.IsNull() || e.Type() != cty.String {
					return nil, fmt.Errorf("list elements must be strings")
				}
				out = append(out, e.AsString())
			}
		default:
			return nil, fmt.Errorf("arguments must be strings or lists of strings, not %s", a.Type().FriendlyName())
		}
	}
	return out, nil
}

// parsePrefix accepts a CIDR ("10.0.0.0/8", "2001:db8::/32") or a bare address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix (example: \"192.0.2.0/24\")", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

var cidrMatchFunc = function.New(&function.Spec{
	Description: "Whether the IP address is inside any of the CIDR prefixes (strings or lists of strings). " +
		"An empty or unparsable address matches nothing.",
	Params:   []function.Parameter{{Name: "ip", Type: cty.String, AllowNull: true}},
	VarParam: &function.Parameter{Name: "cidrs", Type: cty.DynamicPseudoType},
	Type:     function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		cidrs, err := stringsOf(args[1:])
		if err != nil {
			return cty.NilVal, err
		}
		ip := ""
		if !args[0].IsNull() {
			ip = args[0].AsString() // null, like "", matches nothing
		}
		addr, aerr := netip.ParseAddr(ip)
		addr = addr.Unmap() // an IPv4 client seen through an IPv6 socket
		for _, c := range cidrs {
			p, err := parsePrefix(c)
			if err != nil {
				return cty.NilVal, err
			}
			if aerr == nil && p.Contains(addr) {
				return cty.True, nil
			}
		}
		return cty.False, nil
	},
	RefineResult: func(b *cty.RefinementBuilder) *cty.RefinementBuilder { return b.NotNull() },
})

func checkDomainPattern(p string) error {
	rest := strings.TrimPrefix(p, "*.")
	if rest == "" || strings.ContainsAny(rest, "*@ ") {
		return fmt.Errorf("%q is not a domain pattern (examples: \"example.com\", \"*.example.com\")", p)
	}
	return nil
}

var domainMatchFunc = function.New(&function.Spec{
	Description: "Whether the domain equals a pattern (\"example.com\") or is below one (\"*.example.com\"). " +
		"Case-insensitive; a trailing dot is ignored; an address (a@b) is reduced to its domain.",
	Params:   []function.Parameter{{Name: "domain", Type: cty.String, AllowNull: true}},
	VarParam: &function.Parameter{Name: "patterns", Type: cty.DynamicPseudoType},
	Type:     function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		pats, err := stringsOf(args[1:])
		if err != nil {
			return cty.NilVal, err
		}
		for _, p := range pats {
			if err := checkDomainPattern(p); err != nil {
				return cty.NilVal, err
			}
		}
		if args[0].IsNull() {
			return cty.False, nil // a domain not known here matches no pattern
		}
		return cty.BoolVal(domainMatch(args[0].AsString(), pats)), nil
	},
	RefineResult: func(b *cty.RefinementBuilder) *cty.RefinementBuilder { return b.NotNull() },
})

// domainMatch is domain_match over validated patterns.
func domainMatch(d string, pats []string) bool {
	if strings.Contains(d, "@") {
		d = addrDomain(d)
	}
	d = strings.TrimSuffix(strings.ToLower(d), ".")
	for _, p := range pats {
		p = strings.TrimSuffix(strings.ToLower(p), ".")
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			if len(d) > len(suffix) && strings.HasSuffix(d, suffix) {
				return true
			}
		} else if d == p {
			return true
		}
	}
	return false
}

// regexFunc is regex (all=false) or regexall (all=true) with stdlib's semantics (the result is the match, a tuple
// of unnamed captures or an object of named ones; regex fails when nothing matches) and the pattern cache.
func (l *language) regexFunc(all bool) function.Function {
	desc := "The first match of the pattern in the string; an error if there is none (wrap in can() to test)."
	if all {
		desc = "Every non-overlapping match of the pattern in the string, as a list."
	}
	return function.New(&function.Spec{
		Description: desc,
		Params:      []function.Parameter{{Name: "pattern", Type: cty.String}, {Name: "string", Type: cty.String}},
		Type: func(args []cty.Value) (cty.Type, error) {
			ty := cty.DynamicPseudoType
			if args[0].IsKnown() {
				re, err := l.compile(args[0].AsString())
				if err != nil {
					return cty.NilType, function.NewArgError(0, err)
				}
				if ty, err = regexResultType(re); err != nil {
					return cty.NilType, function.NewArgError(0, err)
				}
			}
			if all {
				return cty.List(ty), nil
			}
			return ty, nil
		},
		Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
			re, err := l.compile(args[0].AsString())
			if err != nil {
				return cty.NilVal, function.NewArgError(0, err)
			}
			s := args[1].AsString()
			if !all {
				idx := re.FindStringSubmatchIndex(s)
				if idx == nil {
					return cty.NilVal, fmt.Errorf("pattern did not match any part of the given string")
				}
				return regexResult(re, s, idx, retType), nil
			}
			ety := retType.ElementType()
			each := re.FindAllStringSubmatchIndex(s, -1)
			if len(each) == 0 {
				return cty.ListValEmpty(ety), nil
			}
			out := make([]cty.Value, len(each))
			for i, idx := range each {
				out[i] = regexResult(re, s, idx, ety)
			}
			return cty.ListVal(out), nil
		},
	})
}

func regexResultType(re *regexp.Regexp) (cty.Type, error) {
	names := re.SubexpNames()[1:]
	named, unnamed := 0, 0
	for _, n := range names {
		if n == "" {
			unnamed++
		} else {
			named++
		}
	}
	switch {
	case named == 0 && unnamed == 0:
		return cty.String, nil
	case named > 0 && unnamed > 0:
		return cty.NilType, fmt.Errorf("invalid regular expression: cannot mix named and unnamed capture groups")
	case unnamed > 0:
		return cty.Tuple(slices.Repeat([]cty.Type{cty.String}, unnamed)), nil
	}
	atys := make(map[string]cty.Type, named)
	for _, n := range names {
		atys[n] = cty.String
	}
	return cty.Object(atys), nil
}

func regexResult(re *regexp.Regexp, s string, idx []int, ty cty.Type) cty.Value {
	if ty == cty.String {
		return cty.StringVal(s[idx[0]:idx[1]])
	}
	sub := func(i int) cty.Value {
		a, b := idx[2+2*i], idx[3+2*i]
		if a < 0 || b < 0 {
			return cty.NullVal(cty.String) // inside a group that did not match
		}
		return cty.StringVal(s[a:b])
	}
	names := re.SubexpNames()[1:]
	if ty.IsTupleType() {
		vals := make([]cty.Value, len(names))
		for i := range vals {
			vals[i] = sub(i)
		}
		return cty.TupleVal(vals)
	}
	vals := make(map[string]cty.Value, len(names))
	for i, n := range names {
		vals[n] = sub(i)
	}
	return cty.ObjectVal(vals)
}

func (l *language) regexMatchFunc() function.Function {
	return matchFunc2("Whether the regular expression matches anywhere in the string.", "string", "pattern",
		func(s, p string) (cty.Value, error) {
			re, err := l.compile(p)
			if err != nil {
				return cty.NilVal, function.NewArgError(1, err)
			}
			return cty.BoolVal(re.MatchString(s)), nil
		})
}

func (l *language) regexReplaceFunc() function.Function {
	return function.New(&function.Spec{
		Description: "The string with every match of the pattern replaced ($1 expands a capture group).",
		Params: []function.Parameter{
			{Name: "string", Type: cty.String}, {Name: "pattern", Type: cty.String}, {Name: "replacement", Type: cty.String},
		},
		Type: function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			re, err := l.compile(args[1].AsString())
			if err != nil {
				return cty.NilVal, function.NewArgError(1, err)
			}
			return cty.StringVal(re.ReplaceAllString(args[0].AsString(), args[2].AsString())), nil
		},
		RefineResult: func(b *cty.RefinementBuilder) *cty.RefinementBuilder { return b.NotNull() },
	})
}
