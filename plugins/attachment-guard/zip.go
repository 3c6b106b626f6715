package main

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/bzip2"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/ulikunitz/xz"
)

// ZIP record lengths and the largest end-of-central-directory comment.
const (
	zipEOCDLen     = 22
	zipMaxComment  = 0xFFFF
	zipCentralLen  = 46
	zipLocalLen    = 30
	zipLocator64   = 20
	zipEOCD64Len   = 56
	zipMethodStore = 0
	zipMethodFlate = 8
	zipMethodBzip2 = 12
	zipMethodXz    = 95
	zipMethodAES   = 99 // WinZip AES: the real method is in the 0x9901 extra field
)

// ZIP general purpose flags.
const (
	zipFlagEncrypted  = 1 << 0
	zipFlagDescriptor = 1 << 3  // sizes and CRC follow the data, not in the local header
	zipFlagStrong     = 1 << 6  // PKWARE strong encryption
	zipFlagMaskedDir  = 1 << 13 // PKWARE central directory encryption: the local header values are masked
)

// zipEntry is one member of a ZIP archive, as its central directory or a local header describes it.
type zipEntry struct {
	name         string
	alt          string // an Info-ZIP Unicode path that differs from name, or ""
	method       uint16
	flags        uint16
	csize, usize int64
	offset       int64 // of the local header in the content, the shift of a self-extractor applied
	dataOffset   int64 // of the data, when a local scan found the entry (0: read the local header)
}

func (e *zipEntry) encrypted() bool {
	return e.flags&(zipFlagEncrypted|zipFlagStrong) != 0 || e.method == zipMethodAES
}

func (e *zipEntry) isDir() bool { return strings.HasSuffix(e.name, "/") }

// errDamaged is wrapped by every error about an archive that is not a well-formed ZIP.
var errDamaged = errors.New("damaged archive")

func damaged(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errDamaged, fmt.Sprintf(format, args...))
}

// zipArchive walks one ZIP archive: the central directory first (what Explorer, 7-Zip and unzip list), then
// the local headers that precede it when no directory entry accounts for them (a second archive concatenated
// in front, which some tools open instead), or all the local headers when the directory is missing or damaged
// (unzip and streaming extractors fall back to them). Every name is checked; each member's first bytes are
// sniffed, and a member that is itself an archive is opened in turn.
func (w *walker) zipArchive(ra readAtFunc, size int64, depth int) error {
	if size < zipLocalLen {
		// Shorter than one local header and no end record fits either: no extractor finds a file in it.
		if b, err := ra(0, 4); err == nil && string(b) == "PK\x03\x04" {
			return nil
		}
	}
	entries, dirErr := w.zipCentral(ra, size)
	if errors.Is(dirErr, errBudget) || errors.Is(dirErr, errEntries) || errors.Is(dirErr, errEncryptedNames) {
		// An encrypted directory masks the local headers too: they hold placeholders, not the names.
		return dirErr
	}
	scanTo := size
	if dirErr == nil {
		for _, e := range entries {
			scanTo = min(scanTo, e.offset)
		}
	}
	if scanTo > 0 {
		head, err := ra(0, 4)
		if err != nil {
			return err
		}
		if h := string(head); h == "PK\x03\x04" || h == "PK\x07\x08" || h == "PK00" {
			local, err := w.zipLocalScan(ra, scanTo)
			entries = append(local, entries...)
			if err != nil {
				if dirErr == nil || errors.Is(err, errBudget) || errors.Is(err, errEntries) {
					return err
				}
				return fmt.Errorf("%w; local headers: %w", dirErr, err)
			}
			dirErr = nil // the local headers describe the whole archive
		}
	}
	if dirErr != nil {
		return dirErr
	}
	// Members are visited in the order of their data, so that the host's reads of the attachment go forward.
	// The directory usually lists them in that order already.
	byOffset := func(a, b zipEntry) int { return cmp.Compare(a.offset, b.offset) }
	if !slices.IsSortedFunc(entries, byOffset) {
		slices.SortStableFunc(entries, byOffset)
	}
	for i := range entries {
		if i > 0 && entries[i].offset == entries[i-1].offset {
			continue // found by the local scan and in the directory: one member
		}
		if err := w.zipMember(ra, size, &entries[i], depth); err != nil {
			return err
		}
	}
	return nil
}

// zipCentral reads the central directory record by record, so its size is bounded by the byte budget, not by
// a number of entries. It finds the end record in the last 64 KiB, follows a ZIP64 locator, and allows for data
// prepended to the archive (a self-extractor). Every name is checked as it is read.
func (w *walker) zipCentral(ra readAtFunc, size int64) ([]zipEntry, error) {
	tailLen := min(int64(zipEOCDLen+zipMaxComment), size)
	tail, err := ra(size-tailLen, int(tailLen))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndex(tail, []byte("PK\x05\x06"))
	if i < 0 || len(tail)-i < zipEOCDLen {
		return nil, damaged("no end-of-central-directory record")
	}
	eocd := tail[i:]
	eocdOff := size - tailLen + int64(i)
	count := int64(binary.LittleEndian.Uint16(eocd[10:12]))
	dirSize := int64(binary.LittleEndian.Uint32(eocd[12:16]))
	dirOff := int64(binary.LittleEndian.Uint32(eocd[16:20]))
	if count == 0xFFFF || dirSize == 0xFFFFFFFF || dirOff == 0xFFFFFFFF {
		// ZIP64: the locator sits just before the end record and points at the ZIP64 end record.
		if eocdOff < zipLocator64 {
			return nil, damaged("zip64 archive without a locator")
		}
		loc, err := ra(eocdOff-zipLocator64, zipLocator64)
		if err != nil {
			return nil, err
		}
		if len(loc) < zipLocator64 || string(loc[:4]) != "PK\x06\x07" {
			return nil, damaged("zip64 archive without a locator")
		}
		// The locator gives the ZIP64 end record's offset; a self-extractor stub shifts it, and then the record
		// is the one that ends at the locator (without an extensible data sector).
		var r []byte
		for _, at := range []int64{int64(binary.LittleEndian.Uint64(loc[8:16])), eocdOff - zipLocator64 - zipEOCD64Len} {
			if at < 0 || at > eocdOff-zipLocator64-zipEOCD64Len {
				continue
			}
			if r, err = ra(at, zipEOCD64Len); err != nil {
				return nil, err
			}
			if len(r) == zipEOCD64Len && string(r[:4]) == "PK\x06\x06" {
				eocdOff = at
				break
			}
			r = nil
		}
		if r == nil {
			return nil, damaged("no zip64 end record")
		}
		count = int64(binary.LittleEndian.Uint64(r[32:40]))
		dirSize = int64(binary.LittleEndian.Uint64(r[40:48]))
		dirOff = int64(binary.LittleEndian.Uint64(r[48:56]))
	}
	if dirSize < 0 || dirSize > eocdOff || dirOff < 0 {
		return nil, damaged("central directory out of range")
	}
	// The directory ends where the end record starts; if the recorded offset disagrees, the archive was
	// prefixed with other data (a self-extractor stub) and every offset is shifted by the same amount.
	start := eocdOff - dirSize
	if dirOff > start {
		return nil, damaged("central directory out of range")
	}
	shift := start - dirOff
	br := bufio.NewReaderSize(&seqReader{ra: ra, off: start, end: eocdOff}, bufSize(eocdOff-start, 64<<10))
	var entries []zipEntry
	rec := make([]byte, zipCentralLen)
	var scratch []byte
	for {
		if _, err := io.ReadFull(br, rec[:4]); err == io.EOF {
			break
		} else if err != nil {
			return entries, wrapRead(err, "central directory")
		}
		if string(rec[:4]) != "PK\x01\x02" {
			// A digital signature record may close the directory.
			if string(rec[:4]) == "PK\x05\x05" {
				break
			}
			return entries, damaged("bad central directory record after %d entries", len(entries))
		}
		if _, err := io.ReadFull(br, rec[4:]); err != nil {
			return entries, wrapRead(err, "central directory")
		}
		nameLen := int(binary.LittleEndian.Uint16(rec[28:30]))
		extraLen := int(binary.LittleEndian.Uint16(rec[30:32]))
		commentLen := int(binary.LittleEndian.Uint16(rec[32:34]))
		if n := nameLen + extraLen + commentLen; cap(scratch) < n {
			scratch = make([]byte, n)
		}
		vari := scratch[:nameLen+extraLen+commentLen]
		if _, err := io.ReadFull(br, vari); err != nil {
			return entries, wrapRead(err, "central directory")
		}
		e := zipEntry{
			flags:  binary.LittleEndian.Uint16(rec[8:10]),
			method: binary.LittleEndian.Uint16(rec[10:12]),
			csize:  int64(binary.LittleEndian.Uint32(rec[20:24])),
			usize:  int64(binary.LittleEndian.Uint32(rec[24:28])),
			offset: int64(binary.LittleEndian.Uint32(rec[42:46])),
		}
		e.name = string(vari[:nameLen])
		zipExtra(vari[nameLen:nameLen+extraLen], &e)
		e.offset += shift
		if e.flags&zipFlagMaskedDir != 0 {
			return entries, errEncryptedNames
		}
		if err := w.names(e.name, e.alt); err != nil {
			return entries, err
		}
		entries = append(entries, e)
	}
	if int64(len(entries)) != count && count != 0xFFFF {
		// The count in a 16-bit end record wraps past 65535 entries, which some writers do instead of ZIP64.
		if count > 0xFFFF || int64(len(entries))%0x10000 != count {
			return entries, damaged("central directory lists %d of %d entries", len(entries), count)
		}
	}
	return entries, nil
}

// zipExtra applies the extra fields of e's header: an Info-ZIP Unicode path (0x7075) that differs from the name
// becomes e.alt (7-Zip, WinRAR and unzip show the Unicode path); ZIP64 (0x0001) gives the sizes and offset; WinZip
// AES (0x9901) marks the entry encrypted.
func zipExtra(extra []byte, e *zipEntry) {
	for len(extra) >= 4 {
		id := binary.LittleEndian.Uint16(extra[0:2])
		n := int(binary.LittleEndian.Uint16(extra[2:4]))
		if 4+n > len(extra) {
			break
		}
		field := extra[4 : 4+n]
		extra = extra[4+n:]
		switch id {
		case 0x0001:
			take := func(v *int64) {
				if *v == 0xFFFFFFFF && len(field) >= 8 {
					*v = int64(binary.LittleEndian.Uint64(field[:8]))
					field = field[8:]
				}
			}
			take(&e.usize)
			take(&e.csize)
			take(&e.offset)
		case 0x7075:
			if len(field) >= 5 && field[0] == 1 {
				if u := field[5:]; string(u) != e.name {
					e.alt = string(u)
				}
			}
		case 0x9901:
			// WinZip AES: the entry is encrypted whatever the method field says afterwards.
			if len(field) >= 7 {
				e.flags |= zipFlagEncrypted
			}
		}
	}
}

// zipLocalScan reads the local headers from the start of the content up to end, the way a streaming extractor
// does: each header, its data (when the header does not give its size, to the data descriptor after it), the
// next header. It stops cleanly at the central directory or at end.
func (w *walker) zipLocalScan(ra readAtFunc, end int64) ([]zipEntry, error) {
	var entries []zipEntry
	off := int64(0)
	for off < end {
		sig, err := ra(off, 4)
		if err != nil {
			return entries, err
		}
		switch string(sig) {
		case "PK\x03\x04":
		case "PK\x01\x02", "PK\x05\x06", "PK\x06\x06":
			// The directory of an archive: another may follow it (archives concatenated).
			next, err := w.nextSignature(ra, off+4, end, "PK\x03\x04")
			if err != nil || next < 0 {
				return entries, err
			}
			off = next
			continue
		case "PK\x07\x08", "PK00":
			if off == 0 {
				off += 4 // the marker of a split archive
				continue
			}
			fallthrough
		default:
			if len(sig) == 0 {
				return entries, nil
			}
			return entries, damaged("no local header at offset %d", off)
		}
		e, err := w.zipLocal(ra, off, nil)
		if err != nil {
			return entries, err
		}
		if err := w.names(e.name, e.alt); err != nil {
			return entries, err
		}
		next := e.dataOffset + e.csize
		if e.flags&zipFlagDescriptor != 0 && e.csize == 0 {
			if next, err = w.zipSkipData(ra, e, end); err != nil {
				return entries, err
			}
		}
		entries = append(entries, *e)
		if next > end {
			return entries, damaged("member %q runs past the end of the archive", e.name)
		}
		if next <= off {
			return entries, damaged("local header at %d loops", off)
		}
		off = next
	}
	return entries, nil
}

// nextSignature returns the offset of the first sig in [from, end), or -1.
func (w *walker) nextSignature(ra readAtFunc, from, end int64, sig string) (int64, error) {
	const chunk = 32 << 10
	for off := from; off < end; off += chunk {
		b, err := ra(off, int(min(chunk+int64(len(sig))-1, end-off)))
		if err != nil {
			return -1, err
		}
		if i := bytes.Index(b, []byte(sig)); i >= 0 {
			return off + int64(i), nil
		}
		if len(b) < chunk {
			break
		}
	}
	return -1, nil
}

// zipLocal reads the local header at off. With central (the directory's entry), its name is checked as well
// when it differs, and the directory's sizes, which are the reliable ones, are kept.
func (w *walker) zipLocal(ra readAtFunc, off int64, central *zipEntry) (*zipEntry, error) {
	h, err := ra(off, zipLocalLen)
	if err != nil {
		return nil, err
	}
	if len(h) < zipLocalLen || string(h[:4]) != "PK\x03\x04" {
		return nil, damaged("no local header at offset %d", off)
	}
	nameLen := int(binary.LittleEndian.Uint16(h[26:28]))
	extraLen := int(binary.LittleEndian.Uint16(h[28:30]))
	vari, err := ra(off+zipLocalLen, nameLen+extraLen)
	if err != nil {
		return nil, err
	}
	if len(vari) < nameLen+extraLen {
		return nil, damaged("local header at offset %d cut short", off)
	}
	flags := binary.LittleEndian.Uint16(h[6:8])
	dataOffset := off + zipLocalLen + int64(nameLen+extraLen)
	if central != nil {
		// A local name that differs from the directory's is what a streaming extractor would create. The name is
		// compared in place: a ZIP of many entries should not cost an allocation per entry.
		var local zipEntry
		if string(vari[:nameLen]) != central.name {
			local.name = string(vari[:nameLen])
		}
		zipExtra(vari[nameLen:], &local)
		other := func(n string) string {
			if n == central.name || n == central.alt {
				return ""
			}
			return n
		}
		if err := w.names(other(local.name), other(local.alt)); err != nil {
			return nil, err
		}
		central.dataOffset = dataOffset
		central.flags |= flags & (zipFlagEncrypted | zipFlagStrong)
		return central, nil
	}
	e := &zipEntry{
		name:       string(vari[:nameLen]),
		flags:      flags,
		method:     binary.LittleEndian.Uint16(h[8:10]),
		csize:      int64(binary.LittleEndian.Uint32(h[18:22])),
		usize:      int64(binary.LittleEndian.Uint32(h[22:26])),
		offset:     off,
		dataOffset: dataOffset,
	}
	zipExtra(vari[nameLen:], e)
	e.offset, e.dataOffset = off, dataOffset // a ZIP64 field gives the sizes; the offset is where the header is
	return e, nil
}

// zipSkipData finds the end of data whose size the local header does not give (a data descriptor follows it):
// a deflate stream ends by itself; stored data ends at the descriptor's signature.
func (w *walker) zipSkipData(ra readAtFunc, e *zipEntry, end int64) (int64, error) {
	switch e.method {
	case zipMethodFlate:
		cr := &countingByteReader{br: bufio.NewReaderSize(&seqReader{ra: ra, off: e.dataOffset, end: end}, bufSize(end-e.dataOffset, 32<<10))}
		fr := flate.NewReader(cr)
		if _, err := io.Copy(io.Discard, w.limit(fr)); err != nil {
			return 0, wrapRead(err, "deflate data")
		}
		e.csize = cr.n
		next := e.dataOffset + cr.n
		d, err := ra(next, 4)
		if err != nil {
			return 0, err
		}
		if string(d) == "PK\x07\x08" {
			next += 4
		}
		return next + 12, nil // CRC and two 32-bit sizes (a ZIP64 descriptor is read as a damaged archive)
	case zipMethodStore:
		br := bufio.NewReaderSize(&seqReader{ra: ra, off: e.dataOffset, end: end}, bufSize(end-e.dataOffset, 32<<10))
		var n int64
		var last uint32
		for {
			c, err := br.ReadByte()
			if err != nil {
				return 0, damaged("stored data without a data descriptor")
			}
			n++
			last = last<<8 | uint32(c)
			// "PK\x07\x08", then the CRC and the compressed size, which must be the bytes before it: the
			// signature alone may well occur in stored data (a stored archive, for one).
			if d, err := br.Peek(8); last == 0x504B0708 && err == nil && int64(binary.LittleEndian.Uint32(d[4:8])) == n-4 {
				e.csize = n - 4
				if err := w.charge(n); err != nil {
					return 0, err
				}
				return e.dataOffset + n + 12, nil
			}
		}
	}
	return 0, damaged("data of unknown size in compression method %d", e.method)
}

// zipMember inspects the content of one member: it is sniffed, and opened when it is an archive.
func (w *walker) zipMember(ra readAtFunc, size int64, e *zipEntry, depth int) error {
	if e.isDir() {
		return nil
	}
	if e.encrypted() {
		w.encrypted(e.name)
		return nil
	}
	if e.dataOffset == 0 {
		if _, err := w.zipLocal(ra, e.offset, e); err != nil {
			return err
		}
	}
	if e.usize == 0 && e.csize == 0 {
		return nil
	}
	if e.csize < 0 || e.dataOffset+e.csize > size {
		return damaged("member %q runs past the end of the archive", e.name)
	}
	data := &seqReader{ra: ra, off: e.dataOffset, end: e.dataOffset + e.csize}
	switch e.method {
	case zipMethodStore:
		// Stored content is a window of this archive's content: it is read in place, never copied.
		sub := func(off int64, n int) ([]byte, error) {
			if off >= e.csize {
				return nil, nil
			}
			return ra(e.dataOffset+off, int(min(int64(n), e.csize-off)))
		}
		return w.content(e.name, depth, sub, e.csize, nil)
	// Compressed data is read in small steps: usually only the first bytes of a member are decompressed, and
	// what is read counts against the budget.
	case zipMethodFlate:
		fr := inflaters.Get().(io.ReadCloser)
		defer inflaters.Put(fr)
		return w.content(e.name, depth, nil, e.usize, func() (io.Reader, error) {
			return fr, fr.(flate.Resetter).Reset(bufio.NewReaderSize(data, bufSize(e.csize, 4096)), nil)
		})
	case zipMethodBzip2:
		return w.content(e.name, depth, nil, e.usize, func() (io.Reader, error) {
			return bzip2.NewReader(bufio.NewReaderSize(data, bufSize(e.csize, 4096))), nil
		})
	case zipMethodXz:
		return w.content(e.name, depth, nil, e.usize, func() (io.Reader, error) {
			return xz.ReaderConfig{DictCap: xzMaxDict}.NewReader(bufio.NewReaderSize(data, bufSize(e.csize, 4096)))
		})
	}
	return fmt.Errorf("%w: %q in compression method %d", errUnsupported, e.name, e.method)
}

// inflaters are reused deflate decompressors: each holds tens of KiB of tables and window, and a ZIP may have
// thousands of deflated members whose first bytes are read.
var inflaters = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}

// countingByteReader counts the bytes consumed through it; flate reads byte by byte from an io.ByteReader, so
// the count is where the deflate stream ended.
type countingByteReader struct {
	br *bufio.Reader
	n  int64
}

func (c *countingByteReader) Read(p []byte) (int, error) {
	n, err := c.br.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingByteReader) ReadByte() (byte, error) {
	b, err := c.br.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}
