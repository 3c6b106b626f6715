// Command sdkprobe is a test plugin for the SDK's behaviour inside the real host: hook mask, handler errors and
// panics, strict configuration, and reads larger than the SDK's scratch buffer.
package main

import (
	"errors"
	"strconv"

	"github.com/postern/postern/sdk/postern"
)

type config struct {
	Fail     string `json:"fail"` // "error" or "panic" makes OnMessage fail that way
	InitFail bool   `json:"init_fail"`
	Parts    bool   `json:"parts"` // OnMessage tags the number of parts instead of the subject
}

var cfg config

func init() {
	postern.OnInit(func() error {
		if err := postern.Config(&cfg); err != nil {
			return err
		}
		if cfg.InitFail {
			return errors.New("init_fail is set")
		}
		return nil
	})
	postern.OnConnect(func(e *postern.Envelope) error {
		return e.Tag("client.ip", e.ClientIP())
	})
	postern.OnMessage(func(m *postern.Message) error {
		switch cfg.Fail {
		case "error":
			_ = m.Tag("before", "failing")
			return errors.New("deliberate failure")
		case "panic":
			var counts map[string]int
			//lint:ignore SA5000 the runtime panic is the point
			counts["x"]++
		}
		if cfg.Parts {
			parts, err := m.Parts()
			if err != nil {
				return err
			}
			return m.Tag("parts", strconv.Itoa(len(parts)))
		}
		subject := m.HeaderDecoded("Subject")
		if len(subject) > 64 {
			return m.Tag("subject.len", strconv.Itoa(len(subject)))
		}
		return m.Tag("subject", subject)
	})
}

func main() {}
