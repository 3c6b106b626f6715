// Package pop3proxy is Postern's POP3 front end: a listener that speaks POP3 to clients and to one upstream POP3
// server, and passes every message a client reads (RETR, TOP) through the retrieval policy of the shared
// pipeline (proxy/mailflow).
//
// Authentication is relayed: the client is logged in exactly when the upstream says so, and the user the
// upstream logged in is the mailbox user policies and the audit log see. Message numbers, UIDLs and deletions are
// the upstream's: DELE and RSET are relayed as they come, and only the client's QUIT is relayed as QUIT, so a
// dropped connection deletes nothing (RFC 1939 §6).
//
// Sizes are exact by default: STAT and LIST answer the sizes of what RETR will serve, which needs every listed
// message filtered at the first STAT or LIST. Filtered results are kept in a bounded cache keyed by upstream,
// user, UIDL and configuration version, so a message is filtered once however often it is listed or read, and a
// reload never serves what an older configuration decided. SizeUpstream reports the upstream's sizes for
// messages not filtered yet instead, for very large maildrops.
//
// A withheld message (reject, discard, quarantine) is stored in the quarantine before its notice is served, so
// that a client deleting what it downloaded loses nothing; a tempfail is -ERR [SYS/TEMP], and so is anything
// that keeps a message from being filtered completely.
package pop3proxy
