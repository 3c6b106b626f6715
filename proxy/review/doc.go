// Package review is the reviewer web page for compliance teams: search decision records, read a decision, list
// the quarantine, open a quarantined message safely, release or delete it with a reason. It is an http.Handler
// that `postern run` mounts at "/" of the admin listener when the admin block has a review block.
//
// # Roles
//
// Users are in a file (name:role:hash, argon2id or bcrypt; `postern review adduser` writes it), read again when
// it changes. An auditor reads decision records and quarantine metadata, never what a message says (not its
// subject either: the audit log leaves it out for the same reason); a reviewer also opens messages, downloads
// parts, releases and deletes; an admin may do everything and sees the users.
//
// # Sessions
//
// A login gives a random token in a cookie (HttpOnly, SameSite=Strict, Secure and __Host- under TLS); the
// server keeps only its hash, ends it after an idle time and a maximum age, and bounds how many there are. Every
// POST carries the session's CSRF token and must come from the same origin; the login form has its own token,
// bound to a cookie. Failed logins are counted per client address and per user name in a sliding window, and
// past the limit a login is refused (429) before the password is looked at. Password hashes are computed two
// at a time at most (an argon2id hash takes 64 MiB).
//
// # A hostile message
//
// Everything a message says is written into the page through html/template as text: headers and text parts
// decoded and shown in <pre>, HTML parts as their source, never rendered; control and bidirectional characters
// shown as code points. The Content-Security-Policy allows the page's own style sheet and nothing else (no
// script at all, no image, no frame, no connection), so even a mistake in escaping could not run script or load
// remote content. Parts are offered only as downloads: application/octet-stream, Content-Disposition:
// attachment, nosniff and a sandbox policy.
//
// # Audit
//
// Logins (refused ones too), logouts, body views, downloads and actions refused for a role are EventReview
// records in the audit log; a view or a download that cannot be recorded does not happen. Releases and
// deletions are recorded by the quarantine store, with the reviewer as the actor.
package review
