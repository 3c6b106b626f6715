package mailflow

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/postern/postern/proxy/policy"
)

// Quarantine is the store of withheld messages: a private directory holding, for each message, NAME.eml (the
// message as received, byte for byte) and NAME.json (a QuarantineRecord with the decision). NAME is the time of
// storing and the message's ID, and is what Store returns.
type Quarantine struct {
	dir string
}

// OpenQuarantine opens (and if need be creates, mode 0700) the quarantine directory.
func OpenQuarantine(dir string) (*Quarantine, error) {
	// Quarantined mail is as sensitive as any: the directory is private to the proxy.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return &Quarantine{dir: dir}, nil
}

// Dir is the quarantine directory.
func (q *Quarantine) Dir() string { return q.dir }

// QuarantineRecord is written beside each quarantined message.
type QuarantineRecord struct {
	ID        string           `json:"id"`
	Time      time.Time        `json:"time"`
	Listener  string           `json:"listener"`
	Session   string           `json:"session"`
	ClientIP  string           `json:"client_ip,omitempty"`
	HELO      string           `json:"helo,omitempty"`
	TLS       string           `json:"tls,omitempty"`
	AuthUser  string           `json:"auth_user,omitempty"`
	MailFrom  string           `json:"mail_from"`
	Rcpts     []string         `json:"rcpts"`
	MessageID string           `json:"message_id,omitempty"`
	Size      int64            `json:"size"`
	SHA256    string           `json:"sha256"`
	Decision  *policy.Decision `json:"decision"`
}

// Store keeps the message read from content with its record, and returns the entry's name. Both files are
// written under temporary names, synced and renamed, the record last, so a NAME.json always has its NAME.eml.
// rec.Time is set to now.
func (q *Quarantine) Store(content io.Reader, rec QuarantineRecord) (string, error) {
	rec.Time = time.Now().UTC()
	name := rec.Time.Format("20060102T150405Z") + "-" + rec.ID
	js, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return "", fmt.Errorf("quarantine: encoding the record: %w", err)
	}
	err = writeFileSync(filepath.Join(q.dir, name+".eml"), func(f *os.File) error {
		_, err := f.ReadFrom(content)
		return err
	})
	if err == nil {
		err = writeFileSync(filepath.Join(q.dir, name+".json"), func(f *os.File) error {
			_, err := f.Write(append(js, '\n'))
			return err
		})
	}
	if err != nil {
		return "", fmt.Errorf("quarantine: %w", err)
	}
	return name, nil
}

// writeFileSync creates path (mode 0600) through a temporary name, fills it, syncs it and renames it.
func writeFileSync(path string, fill func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = fill(f)
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
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
