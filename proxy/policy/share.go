package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/postern/postern/proxy/pluginhost"
)

// pluginSet shares loaded plugins between the snapshots of one Manager. A reload that leaves a plugin block as it
// was (same module, configuration, limits, on_error and grants) reuses the loaded plugin, warm instances
// included, instead of compiling and starting it again; a plugin is closed when the last snapshot using it is
// closed. A changed block loads a new plugin beside the old one, which the old snapshot keeps until its sessions
// end: the rules never change in the middle of a conversation.
type pluginSet struct {
	host *pluginhost.Host

	mu     sync.Mutex
	loaded map[pluginKey]*sharedPlugin
}

// pluginKey identifies everything a loaded plugin was built from.
type pluginKey [sha256.Size]byte

type sharedPlugin struct {
	p    *pluginhost.Plugin
	refs int
}

func newPluginSet(host *pluginhost.Host) *pluginSet {
	return &pluginSet{host: host, loaded: map[pluginKey]*sharedPlugin{}}
}

func keyOf(pc pluginhost.Config) pluginKey {
	wasm := sha256.Sum256(pc.Wasm)
	pc.Wasm = nil
	// %#v prints every field, names included, so a field added to Config takes part without a change here.
	return sha256.Sum256(fmt.Appendf(nil, "%x %#v", wasm, pc))
}

// acquire returns the loaded plugin for pc, loading it if no snapshot has it, and takes a reference on it.
func (ps *pluginSet) acquire(ctx context.Context, pc pluginhost.Config) (*pluginhost.Plugin, pluginKey, error) {
	k := keyOf(pc)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if sp := ps.loaded[k]; sp != nil {
		sp.refs++
		return sp.p, k, nil
	}
	// Loading under the lock keeps two reloads from loading the same plugin twice; Manager reloads one at a time
	// anyway, and releases (which also take the lock) only close plugins.
	p, err := ps.host.Load(ctx, pc)
	if err != nil {
		return nil, k, err
	}
	ps.loaded[k] = &sharedPlugin{p: p, refs: 1}
	return p, k, nil
}

// release drops one reference on each key and closes the plugins no snapshot uses any more.
func (ps *pluginSet) release(ctx context.Context, keys []pluginKey) error {
	var closing []*pluginhost.Plugin
	ps.mu.Lock()
	for _, k := range keys {
		sp := ps.loaded[k]
		if sp == nil {
			continue
		}
		if sp.refs--; sp.refs == 0 {
			delete(ps.loaded, k)
			closing = append(closing, sp.p)
		}
	}
	ps.mu.Unlock()
	var errs []error
	for _, p := range closing {
		errs = append(errs, p.Close(ctx))
	}
	return errors.Join(errs...)
}

// len is the number of plugins loaded, for tests.
func (ps *pluginSet) len() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.loaded)
}
