package main

import (
	"errors"

	"github.com/postern/postern/sdk/postern"
)

// bannerTarget returns the part the host appends a banner of media type ct to, or -1 if there is none: the
// first leaf part of that type that is not an attachment, not removed, and not inside an attached message or a
// signed or encrypted multipart (where a change would break the signature). It mirrors the host's rule so the
// plugin can check the part first.
func bannerTarget(parts []postern.Part, ct string, removed map[int]bool) int {
	for _, p := range parts {
		if p.ContentType != ct || p.Multipart || p.Disposition == "attachment" || removed[p.ID] || sealed(parts, p) {
			continue
		}
		return p.ID
	}
	return -1
}

// sealed reports whether a part lies inside an attached message or a signed or encrypted multipart.
func sealed(parts []postern.Part, p postern.Part) bool {
	for id := p.Parent; id >= 0 && id < len(parts); id = parts[id].Parent {
		switch parts[id].ContentType {
		case "message/rfc822", "multipart/signed", "multipart/encrypted":
			return true
		}
		if parts[id].Parent >= id {
			break // a host never numbers a parent after its child; do not loop on nonsense
		}
	}
	return false
}

// bannerParts returns the text and HTML banners to hand to AddBanner, leaving out a half whose target part
// cannot be decoded as text (an unknown charset, broken base64): the host would have to re-encode that part to
// append to it and cannot, and one unreadable part must not stop the message from being marked otherwise.
func bannerParts(m *postern.Message, parts []postern.Part, removed map[int]bool, text, html string) (string, string) {
	if text != "" && !decodable(m, bannerTarget(parts, "text/plain", removed)) {
		postern.Log(postern.LevelInfo, "the text body cannot be decoded; no text banner")
		text = ""
	}
	if html != "" && !decodable(m, bannerTarget(parts, "text/html", removed)) {
		postern.Log(postern.LevelInfo, "the HTML body cannot be decoded; no HTML banner")
		html = ""
	}
	return text, html
}

// decodable reports whether part id (-1: none) can be read as text. Asking for the length reads nothing into
// the plugin.
func decodable(m *postern.Message, id int) bool {
	if id < 0 {
		return true
	}
	_, err := m.ReadPart(id, postern.ModeText, 0, nil)
	return !errors.Is(err, postern.ErrDecode)
}
