package conformance_test

import (
	"context"
	"os"
	"testing"

	"github.com/postern/postern/internal/testplugins"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/sdk/conformance"
)

// kits are the repository's SDKs: a new SDK adds its kit here.
var kits = []struct{ name, dir string }{
	{"kit-go", "sdk/conformance/kit-go"},
	{"kit-c", "sdk/conformance/kit-c"},
}

func TestConformance(t *testing.T) {
	ctx := context.Background()
	host, err := pluginhost.NewHost(ctx, pluginhost.Options{CacheDir: testplugins.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(ctx)
	for _, kit := range kits {
		t.Run(kit.name, func(t *testing.T) {
			wasm, err := os.ReadFile(testplugins.Path(t, kit.dir))
			if err != nil {
				t.Fatal(err)
			}
			res, err := conformance.Run(ctx, host, kit.name, wasm)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range res.Failures {
				t.Error(f)
			}
			if res.Checks < 400 {
				t.Errorf("only %d checks compared", res.Checks)
			}
		})
	}
}
