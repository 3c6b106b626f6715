//go:build !linux

package main

import "log/slog"

// notifier is systemd's sd_notify, which exists on Linux only: elsewhere it does nothing.
type notifier struct{}

func newNotifier(*slog.Logger) *notifier { return &notifier{} }
func (*notifier) ready(string)           {}
func (*notifier) reloading()             {}
func (*notifier) stopping()              {}
func (*notifier) close()                 {}
