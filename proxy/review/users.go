package review

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Role is what a user of the reviewer pages may do.
type Role string

const (
	// RoleAuditor reads decision records and quarantine metadata: never a message's subject, headers or body.
	RoleAuditor Role = "auditor"
	// RoleReviewer also opens quarantined messages, downloads their parts, releases and deletes them.
	RoleReviewer Role = "reviewer"
	// RoleAdmin may do everything, and sees the list of users.
	RoleAdmin Role = "admin"
)

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAuditor, RoleReviewer, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (auditor, reviewer or admin)", s)
}

// MayReadContent reports whether the role may see what a message says (subject, headers, parts).
func (r Role) MayReadContent() bool { return r == RoleReviewer || r == RoleAdmin }

// MayAct reports whether the role may release and delete quarantined messages.
func (r Role) MayAct() bool { return r == RoleReviewer || r == RoleAdmin }

// User is one line of the users file.
type User struct {
	Name string
	Role Role
	Hash string // an argon2id PHC string or a bcrypt hash
	Line int    // where in the file
}

// Limits of the users file: it is written by an admin, but a wrong path must not make the proxy read a disk.
const (
	maxUsersFile = 1 << 20
	maxUsers     = 10000
)

var userName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)

// ValidUserName reports why name cannot be a user's name, or nil.
func ValidUserName(name string) error {
	if !userName.MatchString(name) {
		return fmt.Errorf("user name %q: use 1 to 64 letters, digits and . _ @ + - (starting with a letter or digit)", name)
	}
	return nil
}

// ParseUsers reads a users file: one user a line, "name:role:hash", where hash is an argon2id PHC string
// ($argon2id$v=19$m=...,t=...,p=...$salt$key) or a bcrypt hash ($2a$, $2b$, $2y$), as `postern review adduser`
// writes it. Blank lines and lines starting with # are ignored. Errors name the file and line.
func ParseUsers(name string, data []byte) (map[string]User, error) {
	users := map[string]User{}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxUsersFile)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s:%d: %s", name, n, fmt.Sprintf(format, args...)))
		}
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			fail("want name:role:hash")
			continue
		}
		if err := ValidUserName(f[0]); err != nil {
			fail("%v", err)
			continue
		}
		role, err := ParseRole(f[1])
		if err != nil {
			fail("%v", err)
			continue
		}
		if err := checkHash(f[2]); err != nil {
			fail("user %s: %v", f[0], err)
			continue
		}
		if prev, dup := users[f[0]]; dup {
			fail("user %s is already on line %d", f[0], prev.Line)
			continue
		}
		if len(users) == maxUsers {
			fail("more than %d users", maxUsers)
			break
		}
		users[f[0]] = User{Name: f[0], Role: role, Hash: f[2], Line: n}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s:%d: %w", name, n+1, err))
	}
	return users, errors.Join(errs...)
}

// ReadUsers reads and parses the users file at path.
func ReadUsers(path string) (map[string]User, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	return ParseUsers(path, data)
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(f, maxUsersFile+1)); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	if b.Len() > maxUsersFile {
		return nil, fmt.Errorf("users file %s: larger than %d bytes", path, maxUsersFile)
	}
	return b.Bytes(), nil
}

// Argon2id parameters of new hashes: RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes).
const (
	argonTime    = 3
	argonMemory  = 64 << 10 // KiB
	argonThreads = 4
	argonKeyLen  = 32
)

// HashPassword returns the argon2id PHC string of password with a random salt.
func HashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// argonParams is a parsed argon2id PHC string.
type argonParams struct {
	memory    uint32
	time      uint32
	threads   uint8
	salt, key []byte
}

// Bounds on the parameters a users file may ask for: a hash is run at every login, so a typo such as m=4194304
// must not let one login allocate 4 GiB.
const (
	maxArgonMemory = 256 << 10 // KiB
	maxArgonTime   = 16
)

func parseArgon(h string) (argonParams, error) {
	var p argonParams
	f := strings.Split(h, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return p, errors.New("not an argon2id PHC string")
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, fmt.Errorf("argon2id version %q, want v=%d", f[2], argon2.Version)
	}
	var m, t, th uint64
	for _, kv := range strings.Split(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil {
			return p, fmt.Errorf("argon2id parameter %q", kv)
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			th = n
		default:
			return p, fmt.Errorf("argon2id parameter %q", kv)
		}
	}
	if m < 8 || m > maxArgonMemory || t < 1 || t > maxArgonTime || th < 1 || th > 255 {
		return p, fmt.Errorf("argon2id parameters m=%d,t=%d,p=%d out of range (m 8..%d KiB, t 1..%d, p 1..255)",
			m, t, th, maxArgonMemory, maxArgonTime)
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(f[4])
	if err != nil || len(salt) < 8 {
		return p, errors.New("argon2id salt: not base64 of at least 8 bytes")
	}
	key, err := b64.DecodeString(f[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return p, errors.New("argon2id key: not base64 of 16 to 64 bytes")
	}
	return argonParams{memory: uint32(m), time: uint32(t), threads: uint8(th), salt: salt, key: key}, nil
}

func checkHash(h string) error {
	switch {
	case strings.HasPrefix(h, "$argon2id$"):
		_, err := parseArgon(h)
		return err
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return fmt.Errorf("bcrypt hash: %w", err)
		}
		return nil
	}
	return errors.New("the hash is neither argon2id ($argon2id$...) nor bcrypt ($2b$...); make one with `postern review adduser`")
}

// verifyPassword reports whether password matches the hash, in time independent of where they differ.
func verifyPassword(hash, password string) bool {
	if strings.HasPrefix(hash, "$argon2id$") {
		p, err := parseArgon(hash)
		if err != nil {
			return false
		}
		key := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
		return subtle.ConstantTimeCompare(key, p.key) == 1
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// dummyHash is verified against for an unknown user, so a login takes as long whether the user exists or not.
var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("not a password")
	return h
})

// Users is the users file, read again when it changes (checked at most every second), so `postern review
// adduser` and a removed line take effect without a restart. A file that stops parsing keeps the users last
// read, with the error logged by the caller.
type Users struct {
	path string

	mu      sync.Mutex
	users   map[string]User
	mtime   time.Time
	size    int64
	checked time.Time
	err     error
}

// OpenUsers reads the users file at path. It is an error if it cannot be read or has an error; a file that does
// not exist yet is no user, until `postern review adduser` makes it.
func OpenUsers(path string) (*Users, error) {
	u := &Users{path: path}
	if err := u.reload(time.Now()); err != nil {
		return nil, err
	}
	return u, nil
}

// Lookup returns the user called name as the file says now.
func (u *Users) Lookup(name string) (User, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	if now.Sub(u.checked) >= time.Second {
		u.err = u.reloadLocked(now)
	}
	usr, ok := u.users[name]
	return usr, ok
}

// All returns every user, for the admin's page.
func (u *Users) All() []User {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]User, 0, len(u.users))
	for _, usr := range u.users {
		out = append(out, usr)
	}
	return out
}

// Path is the users file.
func (u *Users) Path() string { return u.path }

// Empty reports whether the file names no user (or does not exist yet).
func (u *Users) Empty() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if time.Since(u.checked) >= time.Second {
		u.err = u.reloadLocked(time.Now())
	}
	return len(u.users) == 0
}

// Err is the error of the last reload, if the file stopped parsing.
func (u *Users) Err() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func (u *Users) reload(now time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.reloadLocked(now)
}

func (u *Users) reloadLocked(now time.Time) error {
	u.checked = now
	fi, err := os.Stat(u.path)
	if errors.Is(err, os.ErrNotExist) {
		u.users, u.mtime, u.size = map[string]User{}, time.Time{}, -1
		return nil
	}
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	if u.users != nil && fi.ModTime().Equal(u.mtime) && fi.Size() == u.size {
		return nil
	}
	users, err := ReadUsers(u.path)
	if err != nil {
		return err
	}
	u.users, u.mtime, u.size = users, fi.ModTime(), fi.Size()
	return nil
}

// AddUser sets name's role and password hash in the users file at path, creating the file (mode 0600) if need
// be, and keeps every other line as it was. The file is replaced through a temporary file and a rename.
func AddUser(path, name string, role Role, hash string) error {
	if err := ValidUserName(name); err != nil {
		return err
	}
	var lines []string
	data, err := readBounded(path)
	switch {
	case err == nil:
		if _, err := ParseUsers(path, data); err != nil {
			return err
		}
		lines = strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	case errors.Is(err, os.ErrNotExist):
		lines = []string{"# Users of Postern's reviewer pages: name:role:hash (postern review adduser writes it)."}
	default:
		return err
	}
	entry := name + ":" + string(role) + ":" + hash
	replaced := false
	for i, l := range lines {
		if n, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && n == name && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			lines[i], replaced = entry, true
		}
	}
	if !replaced {
		lines = append(lines, entry)
	}
	out := []byte(strings.Join(lines, "\n") + "\n")
	if _, err := ParseUsers(path, out); err != nil {
		return err
	}
	return writeFileAtomic(path, out, 0o600)
}

// RemoveUser removes name from the users file at path.
func RemoveUser(path, name string) error {
	data, err := readBounded(path)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	kept := lines[:0]
	found := false
	for _, l := range lines {
		if n, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && n == name {
			found = true
			continue
		}
		kept = append(kept, l)
	}
	if !found {
		return fmt.Errorf("%s: no user %s", path, name)
	}
	return writeFileAtomic(path, []byte(strings.Join(kept, "\n")+"\n"), 0o600)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	f, err := os.CreateTemp(dir, ".users-*")
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("users file %s: %w", path, err)
	}
	return nil
}
