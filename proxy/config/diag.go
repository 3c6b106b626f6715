package config

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Error is a configuration that was refused. It carries every problem found, each with the file, line and column
// it is about, so that an admin fixes them all in one pass rather than one per attempt.
type Error struct {
	// Diagnostics are the problems, errors first then warnings, each in the order found.
	Diagnostics hcl.Diagnostics
	sources     map[string][]byte
}

// Error returns one line per error diagnostic, "file:line:col: summary; detail".
func (e *Error) Error() string {
	var b strings.Builder
	for _, d := range e.Diagnostics {
		if d.Severity != hcl.DiagError {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(DiagnosticLine(d))
	}
	return b.String()
}

// WriteText renders the diagnostics for a terminal: a "file:line:col: error: summary" line, the source line with
// the problem underlined, and the detail.
func (e *Error) WriteText(w io.Writer) error {
	return writeDiagnostics(w, e.sources, e.Diagnostics)
}

// DiagnosticLine formats one diagnostic on one line: "file:line:col: summary; detail".
func DiagnosticLine(d *hcl.Diagnostic) string {
	var b strings.Builder
	if d.Subject != nil {
		b.WriteString(position(d.Subject))
		b.WriteString(": ")
	}
	b.WriteString(d.Summary)
	if d.Detail != "" {
		b.WriteString("; ")
		b.WriteString(d.Detail)
	}
	return b.String()
}

func position(r *hcl.Range) string {
	if r.Start.Line == 0 {
		return r.Filename
	}
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

func writeDiagnostics(w io.Writer, sources map[string][]byte, diags hcl.Diagnostics) error {
	bw := bufio.NewWriter(w)
	for _, d := range diags {
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		if d.Subject != nil {
			fmt.Fprintf(bw, "%s: ", position(d.Subject))
		}
		fmt.Fprintf(bw, "%s: %s\n", sev, d.Summary)
		if d.Subject != nil && d.Subject.Start.Line > 0 {
			if line, ok := sourceLine(sources[d.Subject.Filename], d.Subject.Start.Line); ok {
				gutter := fmt.Sprintf("%5d | ", d.Subject.Start.Line)
				fmt.Fprintf(bw, "%s%s\n", gutter, line)
				fmt.Fprintf(bw, "%s%s\n", strings.Repeat(" ", len(gutter)-2)+"| ", underline(line, d.Subject))
			}
		}
		if d.Detail != "" {
			for _, l := range strings.Split(d.Detail, "\n") {
				fmt.Fprintf(bw, "  %s\n", l)
			}
		}
	}
	return bw.Flush()
}

// sourceLine returns line n (1-based) of src with tabs expanded, so the underline lines up.
func sourceLine(src []byte, n int) (string, bool) {
	for i := 1; i < n; i++ {
		j := bytes.IndexByte(src, '\n')
		if j < 0 {
			return "", false
		}
		src = src[j+1:]
	}
	if j := bytes.IndexByte(src, '\n'); j >= 0 {
		src = src[:j]
	}
	return strings.ReplaceAll(strings.TrimRight(string(src), "\r"), "\t", " "), len(src) > 0 || n == 1
}

// underline marks the subject's columns on its first line. Columns count characters, as hcl.Pos does.
func underline(line string, r *hcl.Range) string {
	n := len([]rune(line))
	start := r.Start.Column - 1
	end := n
	if r.End.Line == r.Start.Line {
		end = r.End.Column - 1
	}
	start = max(0, min(start, n))
	end = max(start+1, min(end, n))
	return strings.Repeat(" ", start) + strings.Repeat("^", end-start)
}

// errorf builds an error diagnostic about subject.
func errorf(subject hcl.Range, summary, format string, args ...any) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: subject.Ptr()}
}

// warnf builds a warning diagnostic about subject.
func warnf(subject hcl.Range, summary, format string, args ...any) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: subject.Ptr()}
}

// sortDiagnostics orders errors before warnings and each by file (in files' order) and position, so that a long
// list reads top to bottom.
func sortDiagnostics(diags hcl.Diagnostics, files []string) hcl.Diagnostics {
	out := slices.Clone(diags)
	fileIndex := func(d *hcl.Diagnostic) int {
		if d.Subject == nil {
			return -1
		}
		if i := slices.Index(files, d.Subject.Filename); i >= 0 {
			return i
		}
		return len(files)
	}
	slices.SortStableFunc(out, func(a, b *hcl.Diagnostic) int {
		if a.Severity != b.Severity {
			if a.Severity == hcl.DiagError {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(fileIndex(a), fileIndex(b)); c != 0 || a.Subject == nil || b.Subject == nil {
			return c
		}
		return cmp.Compare(a.Subject.Start.Byte, b.Subject.Start.Byte)
	})
	return out
}
