//go:build linux

package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// notifier tells systemd about the service's state (sd_notify(3)): READY=1 once every listener serves,
// RELOADING=1 and READY=1 around a reload, STOPPING=1 when a shutdown begins. It sends datagrams to the unix
// socket $NOTIFY_SOCKET names (a path, or an abstract name starting with "@"); without the variable it does
// nothing, so `postern run` behaves the same outside systemd. The variable is removed from the environment, so no
// child process speaks for the service.
type notifier struct {
	conn *net.UnixConn
	log  *slog.Logger
}

// newNotifier connects to $NOTIFY_SOCKET, if it is set.
func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{log: log}
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return n
	}
	os.Unsetenv("NOTIFY_SOCKET")
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
		log.Warn("NOTIFY_SOCKET is neither a path nor an abstract socket name: systemd is not notified", "value", path)
		return n
	}
	// Go maps a leading "@" to the abstract namespace.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.Warn("cannot reach NOTIFY_SOCKET: systemd is not notified", "socket", path, "error", err)
		return n
	}
	n.conn = c
	return n
}

// send sends one notification: lines of VAR=value.
func (n *notifier) send(lines ...string) {
	if n == nil || n.conn == nil {
		return
	}
	if _, err := n.conn.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		n.log.Warn("sd_notify failed", "state", lines[0], "error", err)
	}
}

// ready says that the service serves; status is shown by systemctl status.
func (n *notifier) ready(status string) {
	n.send("READY=1", "STATUS="+status, fmt.Sprintf("MAINPID=%d", os.Getpid()))
}

// reloading says that a reload begins. MONOTONIC_USEC lets systemd tell this reload from an earlier one.
func (n *notifier) reloading() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	n.send("RELOADING=1", "STATUS=reloading the configuration",
		fmt.Sprintf("MONOTONIC_USEC=%d", ts.Sec*1_000_000+ts.Nsec/1000))
}

// stopping says that a shutdown begins.
func (n *notifier) stopping() { n.send("STOPPING=1", "STATUS=draining sessions") }

// close closes the socket.
func (n *notifier) close() {
	if n != nil && n.conn != nil {
		n.conn.Close()
	}
}
