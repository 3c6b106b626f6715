// Package audit writes and verifies Postern's audit log: one JSON line per policy decision, each line carrying the
// hash of the line before it, so that a record edited, deleted or moved after it was written is found by Verify.
// docs/AUDIT.md is the reference for operators and auditors; this comment is the design.
//
// # What a record holds, and what it never holds
//
// NewRecord builds a Record from the policy's Decision and the session's facts: time, listener, protocol,
// direction, client IP, TLS version, authenticated user, envelope, Message-ID, size, SHA-256 of the message as
// received (and as sent on, if changed), configuration version, every policy considered, every plugin call
// (name, module SHA-256, verdict, tags, score, duration, error), the changes made, the final action and the reply.
//
// It never holds a password (the session facts have no field for one), a body, a header value other than
// Message-ID, a plugin's log lines (they may quote the message), or the content of a change (a banner or a new
// header value says what was added; the record says only that it was, where, and how many bytes). The Subject is
// left out on purpose: it is personal data about the content of a communication, and the Message-ID already finds
// the message in the mail server's logs and mailboxes. Tags are recorded as the plugins set them: the ABI tells
// plugins that tags reach this log and must not carry message content, and the first-party DLP plugin redacts
// its matches. Fields a client controls are cut at 998 bytes; one that is not valid UTF-8, which JSON would show with
// U+FFFD, also has its exact bytes in Raw (base64), so that two addresses differing only in invalid bytes stay apart.
//
// # The line and the chain
//
// A line is the record's JSON with "v" and "seq" first and "prev" and "hash" last:
//
//	{"v":1,"seq":42,"event":"decision",…,"prev":"<64 hex>","hash":"<64 hex>"}
//
// hash is the SHA-256 of the line with its hash member removed: the line's bytes up to the comma before "hash",
// then "}". prev is the hash of the record before; the first record of a chain has seq 1 and prev 64 zeros.
// Hashing the written bytes rather than a re-encoding means a verifier needs no canonical JSON and any changed
// byte shows; the fixed positions let Verify check a line without decoding it (one pass of JSON validation and one
// SHA-256). A record is at most 1 MiB: a larger one loses its tags, change lists and long recipient lists and says
// so (Record.Truncated) rather than being lost.
//
// # Writing
//
// Log appends each record with one write to a file opened O_APPEND, so a record is either whole or is the torn
// tail of a crash, and a crash of Postern alone (not of the machine) loses nothing written. Records are encoded
// outside the lock; only sequencing, hashing and the write are serialised. SyncInterval 0 fsyncs before Append
// returns, with concurrent Appends sharing one fsync (group commit); a positive interval fsyncs in the background
// and bounds what a power loss can take. A lock file (path.lock, flock) keeps a second process from forking the
// chain.
//
// Rotation renames the file to path.<UTC time> before a record would take it past MaxBytes; the new file's first
// record names the old file's last as prev, so all files form one chain. Files are ordered by the seq of their
// first record, not their names, so a clock set back cannot misorder them, and a name is never reused.
//
// Open continues the chain from the last record of the active file, or of the newest rotated file when the
// active one is empty or missing (a crash between rename and first write). It checks that record's hash and
// refuses a log whose last record is damaged (ErrDamaged): continuing would bury the damage under valid records.
// Bytes after the last newline are different: only an interrupted write leaves them, and no Append reported them
// as written, so Open removes them and writes a recovery record (EventRecovery) with their offset, length and
// SHA-256: the chain stays whole lines and the event stays on record. After a failed write or fsync the next
// Append reopens the same way, after checking that the file still ends where the log left off.
//
// # Durability before action, and the chain head
//
// AppendDurable (and AppendPending, whose Outcome completes it) returns only once the record is fsynced, whatever
// SyncInterval says: a caller about to act on a decision (send a message on) uses it, and on an error, which
// wraps ErrNotRecorded, answers with a temporary failure instead. With Options.HeadPath the seq and hash of the
// last fsynced record are kept in a separate file, rewritten in place after each fsync; Open refuses a log that
// ends before that head or holds another record at its place (ErrTruncated), before touching the file, so a cut
// record is not mistaken for an interrupted write. AcceptTruncation continues such a log with an EventTruncation
// record.
//
// # Verifying, and what a chain cannot show
//
// Verify and VerifyFiles name the first broken record and why: not a record, changed (hash mismatch), records
// missing (seq gap), moved or duplicated (seq back), replaced or inserted (prev mismatch), or a chain that starts
// before the files given. A chain without a key proves consistency, not authorship: whoever can write the files
// can cut records off the end, or rewrite a record and everything after it. Against that, keep hashes elsewhere:
// the writer logs the chain head at every rotation and close (ship those lines off the machine), and VerifyFiles
// takes them as anchors that must still be in the chain.
package audit
