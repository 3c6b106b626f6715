// Package policy decides what happens to a message: it runs the policies of a configuration, each a `when`
// condition and a chain of plugins, and combines their verdicts, tags, scores and changes into a [Decision].
//
// # Snapshots
//
// [Build] turns a validated configuration (proxy/config) into a [Snapshot]: every plugin loaded into a
// pluginhost.Host (a load failure is a configuration error at the plugin block's source line) and every policy
// compiled. A snapshot never changes. [Snapshot.Evaluate] is safe for concurrent use and is what protocol
// sessions call at each hook.
//
// # Combination
//
// Policies are considered in file order. A policy runs when its `when` matches and at least one plugin of its
// chain implements the hook. Its plugins run in order; the first terminal verdict (reject, tempfail, discard,
// quarantine) ends the chain; tags and changes accumulate and scores add. Without a terminal verdict the chain's
// score is compared with the policy's thresholds and the highest one reached gives the policy's action (tag
// marks the message and lets it through). The first enforce-mode policy with a terminal action decides the
// message and no later policy runs; the changes and tags of every enforce policy that ran, the deciding one
// included, make up the decision. A monitor-mode policy runs the same way but its outcome stays in the trace.
// docs/CONFIG.md states the rules for admins, with examples.
//
// # Hot reload
//
// A [Manager] owns the current snapshot of a configuration file. A session calls [Manager.Acquire] when it
// starts and the returned release function when it ends; [Manager.Reload] builds a new snapshot from the file
// and, if it is valid, makes it current for sessions that start afterwards. Reference counting keeps an old
// snapshot, plugins and all, alive until its last session ends, then closes its plugin host, so a reload never
// changes the rules in the middle of a conversation and never leaks a runtime. An invalid file is refused with
// its diagnostics and changes nothing. [Manager.ControlHandlers] serves `reload` and `status` on the control
// socket (proxy/control).
package policy
