package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/review"
)

func init() {
	register(command{name: "review adduser", summary: "add a user of the reviewer pages, or change one's role or password",
		run: runReviewAddUser})
	register(command{name: "review deluser", summary: "remove a user of the reviewer pages", run: runReviewDelUser})
	register(command{name: "review users", summary: "list the users of the reviewer pages", run: runReviewUsers})
}

// reviewFlags are the flags every review command takes: where the users file is.
type reviewFlags struct {
	fs     *flag.FlagSet
	config *string
	users  *string
}

func newReviewFlags(name string, stderr io.Writer) *reviewFlags {
	fs := flag.NewFlagSet("postern "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &reviewFlags{fs: fs,
		config: fs.String("config", "", "the configuration `FILE` whose admin { review { users_file } } to change"),
		users:  fs.String("users", "", "the users `FILE` itself (instead of -config)")}
}

// parse reads flags before and after the positional arguments ("adduser NAME -role reviewer" as well as
// "adduser -role reviewer NAME").
func (f *reviewFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, err
		}
		if f.fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, f.fs.Arg(0))
		args = f.fs.Args()[1:]
	}
}

func (f *reviewFlags) path() (string, error) {
	switch {
	case *f.users != "" && *f.config != "":
		return "", errors.New("give -config or -users, not both")
	case *f.users != "":
		return *f.users, nil
	case *f.config != "":
		cfg, err := config.Load(*f.config)
		if err != nil {
			return "", err
		}
		if cfg.Admin == nil || cfg.Admin.Review == nil {
			return "", fmt.Errorf("%s has no admin { review { users_file = ... } } block", *f.config)
		}
		return cfg.Admin.Review.UsersFile, nil
	}
	return "", errors.New("no users file: give -config FILE or -users FILE")
}

func runReviewAddUser(args []string, stdout, stderr io.Writer) int {
	f := newReviewFlags("review adduser", stderr)
	role := f.fs.String("role", "reviewer", "the user's `ROLE`: auditor (decisions and metadata, no content), "+
		"reviewer (messages, release, delete) or admin")
	stdin := f.fs.Bool("password-stdin", false, "read the password from the first line of standard input "+
		"(without it, it is asked for on the terminal)")
	f.fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postern review adduser [-config FILE | -users FILE] [-role ROLE] [-password-stdin] NAME")
		fmt.Fprintln(stderr, "\nAdds NAME to the users file with an argon2id hash of its password, or changes its role and password.")
		f.fs.PrintDefaults()
	}
	pos, err := f.parse(args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		f.fs.Usage()
		return 2
	}
	name := pos[0]
	r, err := review.ParseRole(*role)
	if err == nil {
		err = review.ValidUserName(name)
	}
	if err != nil {
		fmt.Fprintf(stderr, "postern review adduser: %v\n", err)
		return 2
	}
	path, err := f.path()
	if err != nil {
		fmt.Fprintf(stderr, "postern review adduser: %v\n", err)
		return 1
	}
	password, err := readNewPassword(*stdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "postern review adduser: %v\n", err)
		return 1
	}
	hash, err := review.HashPassword(password)
	if err == nil {
		err = review.AddUser(path, name, r, hash)
	}
	if err != nil {
		fmt.Fprintf(stderr, "postern review adduser: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s is a %s in %s\n", name, r, path)
	return 0
}

// minPassword is the shortest password adduser takes (NIST SP 800-63B asks for at least 8).
const minPassword = 8

func readNewPassword(fromStdin bool, stderr io.Writer) (string, error) {
	var pw string
	if fromStdin || !isTerminal(os.Stdin) {
		line, err := bufio.NewReader(io.LimitReader(os.Stdin, 4096)).ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return "", fmt.Errorf("reading the password from standard input: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	} else {
		first, err := promptPassword(stderr, "Password: ")
		if err != nil {
			return "", err
		}
		again, err := promptPassword(stderr, "Again: ")
		if err != nil {
			return "", err
		}
		if first != again {
			return "", errors.New("the passwords differ")
		}
		pw = first
	}
	if len([]rune(pw)) < minPassword {
		return "", fmt.Errorf("the password is shorter than %d characters", minPassword)
	}
	if len(pw) > 1024 {
		return "", errors.New("the password is longer than 1024 bytes")
	}
	return pw, nil
}

func runReviewDelUser(args []string, stdout, stderr io.Writer) int {
	f := newReviewFlags("review deluser", stderr)
	f.fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postern review deluser [-config FILE | -users FILE] NAME")
		f.fs.PrintDefaults()
	}
	pos, err := f.parse(args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		f.fs.Usage()
		return 2
	}
	path, err := f.path()
	if err == nil {
		err = review.RemoveUser(path, pos[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "postern review deluser: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s removed from %s; their sessions end at their next request\n", pos[0], path)
	return 0
}

func runReviewUsers(args []string, stdout, stderr io.Writer) int {
	f := newReviewFlags("review users", stderr)
	pos, err := f.parse(args)
	if err != nil {
		return 2
	}
	if len(pos) != 0 {
		f.fs.Usage()
		return 2
	}
	path, err := f.path()
	if err != nil {
		fmt.Fprintf(stderr, "postern review users: %v\n", err)
		return 1
	}
	users, err := review.ReadUsers(path)
	if err != nil {
		fmt.Fprintf(stderr, "postern review users: %v\n", err)
		return 1
	}
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(stdout, "%-24s %s\n", n, users[n].Role)
	}
	return 0
}
