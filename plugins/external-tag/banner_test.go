package main

import (
	"testing"

	"github.com/postern/postern/sdk/postern"
)

func TestBannerTarget(t *testing.T) {
	// 0 multipart/mixed
	//   1 multipart/signed
	//     2 text/plain            (signed: not a target)
	//   3 text/plain attachment   (attachment: not a target)
	//   4 message/rfc822
	//     5 text/plain            (inside an attached message: not a target)
	//   6 text/plain              (the target)
	//   7 text/html               (the target)
	parts := []postern.Part{
		{ID: 0, Parent: -1, ContentType: "multipart/mixed", Multipart: true},
		{ID: 1, Parent: 0, ContentType: "multipart/signed", Multipart: true},
		{ID: 2, Parent: 1, ContentType: "text/plain"},
		{ID: 3, Parent: 0, ContentType: "text/plain", Disposition: "attachment"},
		{ID: 4, Parent: 0, ContentType: "message/rfc822"},
		{ID: 5, Parent: 4, ContentType: "text/plain"},
		{ID: 6, Parent: 0, ContentType: "text/plain"},
		{ID: 7, Parent: 0, ContentType: "text/html"},
	}
	if got := bannerTarget(parts, "text/plain", nil); got != 6 {
		t.Errorf("text target = %d, want 6", got)
	}
	if got := bannerTarget(parts, "text/html", nil); got != 7 {
		t.Errorf("html target = %d, want 7", got)
	}
	if got := bannerTarget(parts, "text/plain", map[int]bool{6: true}); got != -1 {
		t.Errorf("text target with 6 removed = %d, want -1", got)
	}
	// A parent numbered after its child is nonsense; it must not loop.
	loop := []postern.Part{{ID: 0, Parent: 1, ContentType: "text/plain"}, {ID: 1, Parent: 0, ContentType: "multipart/mixed"}}
	if got := bannerTarget(loop, "text/plain", nil); got != 0 {
		t.Errorf("target = %d", got)
	}
}
