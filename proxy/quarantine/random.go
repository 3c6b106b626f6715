package quarantine

import (
	"crypto/rand"
	"encoding/hex"
)

func randomSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
