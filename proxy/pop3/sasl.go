package pop3

import (
	"encoding/base64"
	"errors"
)

// EncodeSASL encodes a SASL message for the wire: base64, and "=" for an empty one (RFC 5034 §4).
func EncodeSASL(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

// ErrAuthCancelled is a client's "*" in a SASL exchange.
var ErrAuthCancelled = errors.New("pop3: authentication cancelled")

// DecodeSASL decodes a SASL message from the wire: "=" is empty, "*" a cancellation.
func DecodeSASL(s string) ([]byte, error) {
	switch s {
	case "=":
		return []byte{}, nil
	case "*":
		return nil, ErrAuthCancelled
	}
	return base64.StdEncoding.DecodeString(s)
}
