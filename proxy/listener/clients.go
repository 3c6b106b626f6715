package listener

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Client addresses are counted by network, as Postfix's anvil does: an IPv4 address on its own, an IPv6 address
// with the others of its /84 (smtpd_client_ipv6_prefix_length), since one host easily holds a whole /64.
const (
	clientIPv4Bits = 32
	clientIPv6Bits = 84
)

// maxRateEntries bounds the memory the connection rate limit uses: past it, clients not yet seen in the current
// window are not rate limited until the window ends (the per-client session cap still applies).
const maxRateEntries = 1 << 16

// ClientKey is the network a client address is counted in by the per-client limits.
func ClientKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := clientIPv4Bits
	if a.Is6() {
		bits = clientIPv6Bits
	}
	p, _ := a.Prefix(bits)
	return p
}

// clientKeyOf is ClientKey of a connection's remote address; ok is false when it has none (a pipe).
func clientKeyOf(addr net.Addr) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Prefix{}, false
	}
	return ClientKey(ap.Addr()), true
}

// clients keeps the per-client session counts and connection rates of one Server.
type clients struct {
	mu       sync.Mutex
	sessions map[netip.Prefix]int
	rates    map[netip.Prefix]*rateWindow
	swept    time.Time
}

type rateWindow struct {
	start time.Time
	n     int
}

// admit counts a new session from key and reports why it is refused, if it is: ErrClientBusy past
// perClient concurrent sessions, ErrClientRate past rate connections in one window. 0 turns a limit off. A
// session admitted must be released.
func (cs *clients) admit(key netip.Prefix, perClient, rate int, window time.Duration, now time.Time) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if rate > 0 {
		if now.Sub(cs.swept) > window {
			for k, w := range cs.rates {
				if now.Sub(w.start) >= window {
					delete(cs.rates, k)
				}
			}
			cs.swept = now
		}
		w := cs.rates[key]
		if w != nil && now.Sub(w.start) >= window {
			w.start, w.n = now, 0
		}
		if w == nil && len(cs.rates) < maxRateEntries {
			if cs.rates == nil {
				cs.rates = map[netip.Prefix]*rateWindow{}
			}
			w = &rateWindow{start: now}
			cs.rates[key] = w
		}
		if w != nil {
			// Refused connections count too, as with anvil: a client hammering the port stays refused.
			if w.n++; w.n > rate {
				return ErrClientRate
			}
		}
	}
	if perClient > 0 {
		if cs.sessions[key] >= perClient {
			return ErrClientBusy
		}
		if cs.sessions == nil {
			cs.sessions = map[netip.Prefix]int{}
		}
		cs.sessions[key]++
	}
	return nil
}

// release ends a session admitted from key.
func (cs *clients) release(key netip.Prefix) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if n := cs.sessions[key]; n > 1 {
		cs.sessions[key] = n - 1
	} else {
		delete(cs.sessions, key)
	}
}
