// Package quarantine is Postern's store of withheld messages, shared by every listener of a proxy: for each entry
// the original bytes exactly as received and a metadata record (the decision, who and what it concerned, and the
// link to its audit record), and the operations compliance teams need on it: list with filters, show, release
// through a delivery route, delete, and expiry by age and total size. docs/QUARANTINE.md is the reference for
// operators; this comment is the design.
//
// # Files
//
// An entry ID is the UTC time of storing and the message's reference ("20261202T210530Z-abc.1"). A message
// withheld at retrieval has a reference that names it for good (its mailbox and UID or UIDL): StoreOnce finds
// it kept already when it is read again, so the store holds one copy however often it is read.
// The store directory (mode 0700) holds ID.eml, the message byte for byte, and ID.json, its Meta. Both are
// written under temporary names, fsynced and renamed, the message first and the metadata last, and the
// directory is fsynced: an ID.json always has its ID.eml, and a crash leaves at most a temporary file, which
// Open removes. An ID.eml without metadata (a crash between the renames) is listed with what can be known from
// the file alone, never silently dropped.
//
// # Concurrency
//
// `postern run` stores, links and expires entries while `postern quarantine` (or the reviewer page) lists,
// releases and deletes them, possibly from another process. Every change to an existing entry holds an exclusive
// flock on its ID.eml, which is never replaced (only the metadata is rewritten, by rename), so two releases of
// one entry cannot both deliver it, and a rewrite never loses another's update. Readers need no lock: they see the
// old or the new metadata file, never a mixture.
//
// # Audit
//
// Every release, deletion and expiry is an audit record (audit.EventQuarantineRelease, ...Delete, ...Expiry),
// written durably before the action: a deletion that cannot be recorded does not happen. A release record is
// followed by an EventOutcome record with the reply of the delivery route, as a pending decision is; a release
// record without one means Postern stopped while delivering.
package quarantine
