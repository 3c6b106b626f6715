package main

import (
	"testing"

	"github.com/postern/postern/internal/pluginharness"
)

var harness = pluginharness.New("plugins/verdict")

func TestMain(m *testing.M) { harness.Main(m) }
