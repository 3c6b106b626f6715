package main

import (
	"testing"

	"github.com/postern/postern/internal/pluginharness"
)

// harness runs the plugin in the real plugin host (internal/pluginharness): the tests check what the host
// records (verdict, tags, score, changes) and the message written with those changes.
var harness = pluginharness.New("plugins/dlp")

func TestMain(m *testing.M) { harness.Main(m) }
