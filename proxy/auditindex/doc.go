// Package auditindex keeps a searchable index of the audit log's records, in an embedded SQLite file or in a
// PostgreSQL database shared by several nodes. docs/AUDIT.md is the reference for operators; this comment is the
// design.
//
// # The log is the truth, the index is derived
//
// The hash-chained log (package audit) stays the record: the index holds, for every record, the exact line as it
// is in the log plus the columns and terms that searching needs (time, sender, recipients, users, Message-ID,
// digests, action, policies, plugins, tags, score, listener, protocol). Anything the index holds can be rebuilt
// from the log (Reindex), and a Feeder catches an index up from the log whenever it is behind: at start, after a
// record it missed, after the database was unreachable. Search results are decoded from the stored line, never
// from the columns, so a result shows the record as the log has it.
//
// # Nodes and chains
//
// Every row names its node (a configured name, the host name by default). Each node writes its own chain; a
// PostgreSQL database shared by a fleet holds one chain per node, and VerifyChains recomputes every one of them
// from the stored lines, as `postern audit verify` does for files.
//
// # Feeding, off the reply path
//
// The audit log calls Feeder.Written under its lock after each write. Written copies the line into a queue bounded
// in records and bytes and returns; it never blocks and never fails. A goroutine writes the queue to the index
// in batches (one transaction each). A record that did not fit in the queue, or a batch the database refused, is
// counted and logged, and the goroutine later reads what it missed from the log files (audit.ReadFrom): a slow
// or failed index never delays or refuses mail, and loses nothing the log has.
//
// # Search
//
// Query filters combine with AND. Addresses, user names and digests match case-insensitively and exactly
// (an address given as "@example.com" matches its domain); a Message-ID matches with or without its angle
// brackets. Results come newest first, paged with Limit and Offset; outcome records are folded into the pending
// decision they complete (Row.Outcome) instead of being rows of their own.
package auditindex
