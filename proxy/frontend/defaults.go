package frontend

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/listener"
	"github.com/postern/postern/proxy/message"
)

// Hostname is h, or the machine's host name when h is empty ("localhost" when it has none). White space is an
// error: the name goes into greetings, trace fields and notices.
func Hostname(h string) (string, error) {
	if h == "" {
		if h, _ = os.Hostname(); h == "" {
			h = "localhost"
		}
	}
	if strings.ContainsAny(h, " \t\r\n") {
		return h, fmt.Errorf("hostname %q contains white space", h)
	}
	return h, nil
}

// CheckUpstream checks the upstream's host:port, which a custom dialer (customDial) makes optional.
func CheckUpstream(addr string, customDial bool) error {
	if customDial {
		return nil
	}
	if addr == "" {
		return errors.New("no upstream: set upstream to host:port")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("upstream %q: %w", addr, err)
	}
	return nil
}

// CheckTrusted checks the networks whose PROXY protocol headers are believed.
func CheckTrusted(trusted []string) error {
	for _, t := range trusted {
		if _, err := listener.ParsePrefix(t); err != nil {
			return fmt.Errorf("proxy_protocol trusted %q: %w", t, err)
		}
	}
	return nil
}

// SpoolDefaults fills what a front end's options leave zero of the pipeline's spool and the MIME bounds: the
// spool directory (os.TempDir()), the memory threshold, and the bounds, whose size bound is raised to
// messageSize, the largest message the front end takes.
func SpoolDefaults(dir *string, memoryThreshold *int64, limits *message.Limits, messageSize int64) {
	if *dir == "" {
		*dir = os.TempDir()
	}
	if *memoryThreshold == 0 {
		*memoryThreshold = config.DefaultMemoryThreshold
	}
	if *limits == (message.Limits{}) {
		*limits = message.DefaultLimits()
	}
	if limits.MaxSize < messageSize {
		limits.MaxSize = messageSize
	}
}
