// Package hosttest runs plugins built with the Go SDK (github.com/postern/postern/sdk/postern) in the real plugin
// host. The tests live here, in the proxy's module, rather than beside the SDK: the SDK is a module of its own with
// no dependencies, so that a plugin author inherits neither the proxy's Go version nor its dependency graph.
package hosttest
