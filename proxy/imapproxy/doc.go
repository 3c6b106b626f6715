// Package imapproxy is Postern's IMAP front end: it serves clients with imapserver and relays each session to the
// upstream with imapclient, addressing messages upstream by UID only.
package imapproxy
