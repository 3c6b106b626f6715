package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Command is one client command: its keyword in upper case and its arguments, split at runs of spaces.
type Command struct {
	Name string
	Args []string
}

// maxKeyword is the longest keyword accepted.
const maxKeyword = 16

// MaxArgs bounds the arguments of a command: RFC 1939's take at most two, AUTH takes two, APOP two.
const MaxArgs = 8

// ErrSyntax is a command line that is not a POP3 command (empty, a keyword that is not 3 to 16 letters, control
// characters, too many arguments). The session answers -ERR and goes on.
var ErrSyntax = errors.New("pop3: syntax error")

// ParseCommand parses one command line (without its line end). Keywords are case-insensitive (RFC 1939 §3);
// arguments keep their case. An argument may hold any printable byte, including 8-bit ones (a UTF-8 user name).
func ParseCommand(line []byte) (Command, error) {
	for _, c := range line {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return Command{}, fmt.Errorf("%w: control character in command", ErrSyntax)
		}
	}
	fields := bytes.Fields(line)
	if len(fields) == 0 {
		return Command{}, fmt.Errorf("%w: empty command", ErrSyntax)
	}
	kw := fields[0]
	// RFC 1939 keywords are 3 or 4 letters; extensions (XCLIENT) are longer.
	if len(kw) < 3 || len(kw) > maxKeyword {
		return Command{}, fmt.Errorf("%w: unknown command", ErrSyntax)
	}
	for _, c := range kw {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return Command{}, fmt.Errorf("%w: unknown command", ErrSyntax)
		}
	}
	if len(fields)-1 > MaxArgs {
		return Command{}, fmt.Errorf("%w: too many arguments", ErrSyntax)
	}
	cmd := Command{Name: strings.ToUpper(string(kw))}
	for _, f := range fields[1:] {
		cmd.Args = append(cmd.Args, string(f))
	}
	return cmd, nil
}

// PassArgument returns the argument of PASS as the client sent it: RFC 1939 lets a password contain spaces, so it
// is the rest of the line after "PASS ", not the first field.
func PassArgument(line []byte) string {
	if len(line) < 5 {
		return ""
	}
	return string(line[5:])
}

// String is the command as a line (without its line end), for logs; PASS and AUTH arguments are hidden.
func (c Command) String() string {
	switch c.Name {
	case "PASS", "APOP":
		return c.Name + " ***"
	case "AUTH":
		if len(c.Args) > 1 {
			return "AUTH " + c.Args[0] + " ***"
		}
	}
	if len(c.Args) == 0 {
		return c.Name
	}
	return c.Name + " " + strings.Join(c.Args, " ")
}

// MessageNumber parses a message-number argument: a decimal number of at most 9 digits, not zero (RFC 1939
// §3). The session checks it against the maildrop.
func MessageNumber(s string) (int, bool) {
	if len(s) == 0 || len(s) > 9 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0
}

// Count parses a non-negative decimal count (TOP's number of lines), at most 9 digits.
func Count(s string) (int, bool) {
	if s == "0" {
		return 0, true
	}
	return MessageNumber(s)
}

// CommandReader reads a client's command lines, each bounded.
type CommandReader struct {
	br  *bufio.Reader
	max int
	// Line is the last line read, without its line end; valid until the next ReadCommand.
	Line []byte
}

// NewCommandReader reads from br lines of at most max bytes, line end included (at least MinLineLength).
func NewCommandReader(br *bufio.Reader, maxLine int) *CommandReader {
	return &CommandReader{br: br, max: max(maxLine, MinLineLength)}
}

// ReadLine reads one line (an AUTH continuation line, for example) without parsing it.
func (r *CommandReader) ReadLine() ([]byte, error) {
	line, err := readLine(r.br, r.max)
	r.Line = line
	return line, err
}

// ReadCommand reads and parses one command. A syntax error (ErrSyntax) leaves the reader usable; any other error
// (ErrLineTooLong, a network error) ends the session.
func (r *CommandReader) ReadCommand() (Command, error) {
	line, err := r.ReadLine()
	if err != nil {
		return Command{}, err
	}
	return ParseCommand(line)
}

// Buffered is the number of bytes the client sent past the last line read: commands pipelined after STLS must be
// discarded, not answered inside TLS.
func (r *CommandReader) Buffered() int { return r.br.Buffered() }
