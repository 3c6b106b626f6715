package main

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/postern/postern/proxy/listener"
)

// frontEnd is a protocol listener as the daemon runs it: the SMTP, POP3 and IMAP servers alike.
type frontEnd interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
	ReloadCertificate() error
}

// boundFrontEnd is a front end with its listening socket; ln is nil once it serves.
type boundFrontEnd struct {
	name    string
	hasCert bool // its client-side TLS reads a certificate file (re-read at a reload)
	srv     frontEnd
	ln      net.Listener
}

// bind records a front end bound to ln, served by serveFrontEnds once every listener could be set up.
func (d *daemon) bind(name string, hasCert bool, srv frontEnd, ln net.Listener) {
	d.frontEnds = append(d.frontEnds, &boundFrontEnd{name: name, hasCert: hasCert, srv: srv, ln: ln})
}

// serveFrontEnds starts serving every bound front end; one that stops with an error stops the daemon.
func (d *daemon) serveFrontEnds() {
	for _, f := range d.frontEnds {
		ln := f.ln
		f.ln = nil
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := f.srv.Serve(ln); err != nil && !errors.Is(err, listener.ErrServerClosed) {
				select {
				case d.failed <- err:
				default:
				}
			}
		}()
	}
}

// shutdownFrontEnds shuts every front end down at once, each letting its sessions finish until ctx ends.
func (d *daemon) shutdownFrontEnds(ctx context.Context) {
	var wg sync.WaitGroup
	for _, f := range d.frontEnds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.srv.Shutdown(ctx); err != nil {
				d.cut.Store(true)
				d.log.Warn("sessions cut off at the shutdown deadline", "listener", f.name, "error", err)
			}
		}()
	}
	wg.Wait()
}

// closeFrontEnds closes every front end, bound or serving, and its sessions.
func (d *daemon) closeFrontEnds() {
	for _, f := range d.frontEnds {
		if f.ln != nil {
			f.ln.Close()
		}
		f.srv.Close()
	}
}

// reloadCertificates re-reads the front ends' certificates; one that cannot be read keeps the previous one.
func (d *daemon) reloadCertificates() (msgs []string) {
	for _, f := range d.frontEnds {
		if !f.hasCert {
			continue
		}
		if err := f.srv.ReloadCertificate(); err != nil {
			d.log.Error("certificate reload failed; the previous certificate stays in use", "listener", f.name, "error", err)
			msgs = append(msgs, "certificate of "+f.name+" not reloaded: "+err.Error())
		}
	}
	return msgs
}
