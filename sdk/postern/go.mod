// The Go SDK for Postern plugins: a module of its own, with no dependencies beyond the standard library, so that
// a plugin inherits neither the proxy's Go version nor its dependency graph. The proxy's module uses it through a
// replace directive; its tests against the real plugin host are in sdk/hosttest.
module github.com/postern/postern/sdk/postern

go 1.24
