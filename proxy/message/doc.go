// Package message is Postern's model of one RFC 5322 / MIME message: an index of byte ranges over the raw
// message, decoders that read a part's content on demand, and a splicer that writes the message back with a set
// of recorded changes applied.
//
// # Index, don't rebuild
//
// [Parse] reads the message once, line by line, from an [io.ReaderAt] (a *bytes.Reader for small messages, an
// *os.File for spilled ones) and records for every MIME part the byte ranges of its header and body, its parsed
// header fields and what its Content-Type, Content-Transfer-Encoding and Content-Disposition say. It keeps
// offsets, not bytes: apart from the header fields nothing of the message is held in memory, and content is
// decoded only when a caller asks for it ([Message.Decoded], [Message.Text]).
//
// The scanner is our own rather than go-message's Walk for two reasons. Walk has no nesting limit and its cost
// grows with the square of the depth (5,000 nested multiparts take seconds), which makes a small message a
// denial of service. Our scanner reads each line once and keeps the open boundaries on a stack bounded by
// [Limits].MaxDepth, so a nesting bomb stops at the limit in well under a millisecond. And a rebuilt message is not the
// message that was received, which the next point is about.
//
// # Splice, don't re-serialise
//
// [Message.WriteTo] copies every byte that no change touches verbatim from the source and writes only what
// changed: a prepended header field, a field replaced in place, a banner inserted at the end of one part's body,
// a part cut out together with its boundary line. A message with no changes is written byte for byte as
// received, and a header change leaves the body byte-identical, so a DKIM signature over the body (bh=) and over
// the header fields it covers stays valid. Rebuilding through a MIME writer would not: it loses the preamble,
// the epilogue and white space on boundary lines, and re-encodes bodies.
//
// # Malformed mail
//
// Parse returns an error only when the source cannot be read. Everything wrong with the message itself is
// recorded as a [Defect] with a stable kind, and the message is indexed as far as possible, the way RFC
// 2045/2046 say where they say (a missing or unparsable Content-Type is text/plain, a missing
// Content-Transfer-Encoding is 7bit, a part without a closing boundary ends where its parent does) and as
// leniently as widely used mail clients otherwise: base64 with characters outside its alphabet, x-uuencode and
// yEnc, parameters without their ';'.
//
// # Every reading
//
// Where mail clients read the same bytes differently, the index keeps every reading rather than picking one:
// [Part].Filenames lists every candidate file name, and other structures (a second boundary, a second
// Content-Type or Content-Transfer-Encoding, a uuencoded block, the message inside a base64 message/rfc822 part)
// are indexed as derived parts ([Part].Derived) after the parts of the structure. The places are recorded as
// ambiguities ([Message.Ambiguities]). Derived parts are bounded like the others, and past a bound the reading is
// flagged with it ([Part].Incomplete, [Message.LimitExceeded]). When a
// [Limits] bound is passed, indexing stops there: [Message.LimitExceeded] names the bound, the parts already
// indexed stay usable, and changes to parts whose end is unknown are refused.
//
// # Concurrency
//
// A Message is immutable after Parse; its methods may be called from several goroutines at once provided the
// source's ReadAt may be (as for *os.File and *bytes.Reader). A [Changes] is not safe for concurrent use.
package message
