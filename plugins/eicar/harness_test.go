package main

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/postern/postern/internal/pluginharness"
)

// harness runs the plugin. Messages holding the test string are stored as templates (name.eml.tmpl) so that no
// anti-virus product on a developer's machine quarantines the repository; the string is put in as they are read.
var harness = func() *pluginharness.Harness {
	h := pluginharness.New("plugins/eicar")
	h.Transform = func(b []byte) []byte {
		b = bytes.ReplaceAll(b, []byte("@EICAR_BASE64@"), []byte(base64.StdEncoding.EncodeToString([]byte(eicarString))))
		return bytes.ReplaceAll(b, []byte("@EICAR@"), []byte(eicarString))
	}
	return h
}()

func TestMain(m *testing.M) { harness.Main(m) }
