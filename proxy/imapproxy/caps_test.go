package imapproxy

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestCapabilitiesIntersection(t *testing.T) {
	upstream := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapMove: {}, imap.CapCondStore: {}, "APPENDLIMIT=1000": {}}
	caps, limit := Capabilities(upstream, 5000)
	if !caps.Has(imap.CapMove) {
		t.Error("MOVE missing though the upstream has it")
	}
	if caps.Has(imap.CapUIDPlus) {
		t.Error("UIDPLUS advertised though the upstream lacks it")
	}
	if caps.Has(imap.CapCondStore) {
		t.Error("CONDSTORE advertised though the proxy does not relay it")
	}
	if limit != 1000 {
		t.Errorf("append limit = %d, want the upstream's smaller 1000", limit)
	}
	if got, _ := caps.AppendLimit(); got == nil || *got != 1000 {
		t.Errorf("advertised APPENDLIMIT = %v, want 1000", got)
	}
}

func TestCapabilitiesIMAP4rev2Implies(t *testing.T) {
	caps, limit := Capabilities(imap.CapSet{imap.CapIMAP4rev2: {}}, 5000)
	for _, c := range []imap.Cap{imap.CapUIDPlus, imap.CapMove, imap.CapNamespace} {
		if !caps.Has(c) {
			t.Errorf("%s missing though IMAP4rev2 implies it", c)
		}
	}
	if limit != 5000 {
		t.Errorf("append limit = %d, want the proxy's own 5000 when the upstream announces none", limit)
	}
}
