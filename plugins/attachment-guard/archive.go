package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/bodgit/sevenzip"
	"github.com/nwaples/rardecode/v2"
	"github.com/ulikunitz/xz"
)

// Errors that end or cut short the walk of an archive. The first two stop the whole walk of an attachment
// (its budget is spent); the others stop one archive, and its siblings are still inspected.
var (
	errBudget         = errors.New("archive byte budget spent")
	errEntries        = errors.New("archive entry budget spent")
	errEncryptedNames = errors.New("archive with encrypted file names")
	errUnsupported    = errors.New("archive member in a compression method the plugin cannot read")
)

// Decoder memory bounds: the guest has 64 MiB by default, and a dictionary is allocated whole.
const (
	xzMaxDict  = 16 << 20
	rarMaxDict = 16 << 20
)

// walker inspects the archives of one attachment: the names of their entries, the content signatures of the
// entries, and the archives inside them, depth-first, within one budget of bytes and one of entries.
type walker struct {
	cfg         *settings
	bytesLeft   int64
	entriesLeft int
	reasons     []reason
	seen        map[string]bool
	notes       []string // why an archive could not be read completely, for the log
}

func newWalker(cfg *settings) *walker {
	return &walker{cfg: cfg, bytesLeft: cfg.archiveBytes, entriesLeft: cfg.archiveEntries, seen: map[string]bool{}}
}

// inspectArchive walks the content of an attachment (head is its start, sniffed what sniff found in it) when
// it is an archive or disk image, and returns the reasons to block it, with notes on what could not be read.
func inspectArchive(cfg *settings, head []byte, sniffed string, ra readAtFunc, size int64) ([]reason, []string) {
	kind := detectArchive(head, sniffed)
	if kind == "" {
		return nil, nil
	}
	w := newWalker(cfg)
	if size > windowSize && size <= inMemoryMax {
		// The host decodes a large part as a stream, and a ZIP is read end first (its directory), then from the
		// start: each jump back costs the host a new pass over the part. One read saves them. The bytes still
		// count against the budget as the walk reads them.
		if all, err := ra(0, int(size)); err == nil && int64(len(all)) == size {
			ra = bytesReadAt(all)
		}
	}
	w.stopped(w.guarded(func() error { return w.archive(kind, 0, w.charged(windowed(ra, size)), size, nil) }))
	return w.reasons, w.notes
}

// guarded runs the walk and turns a panic in a format library, on content crafted to cause one, into a
// damaged archive rather than a plugin fault.
func (w *walker) guarded(walk func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: reading it failed: %v", errDamaged, p)
		}
	}()
	return walk()
}

// inMemoryMax is the largest archive attachment read into guest memory whole before it is walked.
const inMemoryMax = 8 << 20

// windowSize is the least windowed reads from an attachment at once: the members of an archive lie one after
// the other, so their headers and first bytes are mostly in the window of the one before.
const windowSize = 64 << 10

// windowed serves the reads of an archive walk from a window of the content, so that a ZIP with thousands of
// members does not cost three host calls per member. It keeps the host's reads going forward: the host decodes
// a large part as a stream, and a read behind its position starts the decoding again from the beginning, so a
// read that starts inside the window keeps what it overlaps and reads only what follows. A new window is a new
// buffer, because callers may still hold slices of the old one.
func windowed(ra readAtFunc, size int64) readAtFunc {
	var win []byte
	var winOff int64 = -1
	return func(off int64, n int) ([]byte, error) {
		end := winOff + int64(len(win))
		if winOff >= 0 && off >= winOff && off+int64(n) <= end {
			return win[off-winOff : off-winOff+int64(n)], nil
		}
		want := max(n, int(min(windowSize, size-off))) // a window never reaches past the content
		var next []byte
		if winOff >= 0 && off >= winOff && off < end && len(win) > 0 {
			kept := win[off-winOff:]
			b, err := ra(end, want-len(kept))
			if err != nil {
				return nil, err
			}
			next = append(append(make([]byte, 0, len(kept)+len(b)), kept...), b...)
		} else {
			b, err := ra(off, want)
			if err != nil {
				return nil, err
			}
			next = b
		}
		win, winOff = next, off
		return win[:min(n, len(win))], nil
	}
}

func (w *walker) add(code, text string) {
	if !w.seen[code] {
		w.seen[code] = true
		w.reasons = append(w.reasons, reason{code, text})
	}
}

// bound records that part of an archive could not be inspected: with block_incomplete, that blocks it.
func (w *walker) bound(code, text string, err error) {
	if len(w.notes) < maxDetailLines {
		w.notes = append(w.notes, fmt.Sprintf("%s: %v", text, err))
	}
	if w.cfg.incomplete {
		w.add("incomplete:"+code, text)
	}
}

// stopped records why the walk of an archive ended early, if it did.
func (w *walker) stopped(err error) {
	switch {
	case err == nil:
	case errors.Is(err, errBudget):
		w.bound("archive-bytes", fmt.Sprintf("archive content past the budget of %d bytes", w.cfg.archiveBytes), err)
	case errors.Is(err, errEntries):
		w.bound("archive-entries", fmt.Sprintf("archive with more than %d entries", w.cfg.archiveEntries), err)
	case errors.Is(err, errEncryptedNames):
		w.bound("archive-encrypted-names", "archive whose file names are encrypted", err)
	case errors.Is(err, errUnsupported):
		w.bound("archive-unsupported", "archive member in a compression method that cannot be read", err)
	default:
		w.bound("archive-damaged", "damaged archive that cannot be listed completely", err)
	}
}

// names checks the names of one entry (an entry may have several, see zipExtra; "" is none) and counts it.
func (w *walker) names(names ...string) error {
	if !slices.ContainsFunc(names, func(n string) bool { return n != "" }) {
		return nil
	}
	if w.entriesLeft <= 0 {
		return errEntries
	}
	w.entriesLeft--
	for _, n := range names {
		if n == "" {
			continue
		}
		base := n[lastSeparator(n)+1:]
		for _, r := range checkName(base, w.cfg.extensions) {
			w.add("archive:"+r.Code, fmt.Sprintf("%q inside the archive (%s)", printable(base, 100), r.Text))
		}
	}
	return nil
}

// lastSeparator is the index of the last path separator in an entry name, or -1: archives made on Windows
// use backslashes, and extractors there honour them.
func lastSeparator(n string) int {
	for i := len(n) - 1; i >= 0; i-- {
		if n[i] == '/' || n[i] == '\\' {
			return i
		}
	}
	return -1
}

// encrypted records an entry whose content is encrypted, so cannot be inspected.
func (w *walker) encrypted(name string) {
	base := name[lastSeparator(name)+1:]
	if w.cfg.blockEncrypted {
		w.add("archive:encrypted", fmt.Sprintf("encrypted archive (%q cannot be inspected)", printable(base, 100)))
	}
}

// charge takes n bytes from the budget.
func (w *walker) charge(n int64) error {
	if n > w.bytesLeft {
		w.bytesLeft = 0
		return errBudget
	}
	w.bytesLeft -= n
	return nil
}

// charged wraps a readAt so that every byte it returns counts against the budget.
func (w *walker) charged(ra readAtFunc) readAtFunc {
	return func(off int64, n int) ([]byte, error) {
		if int64(n) > w.bytesLeft {
			return nil, errBudget
		}
		b, err := ra(off, n)
		if err != nil {
			return nil, err
		}
		return b, w.charge(int64(len(b)))
	}
}

// limit wraps a decompressor so that every byte it produces counts against the budget.
func (w *walker) limit(r io.Reader) io.Reader { return &budgetReader{r: r, w: w} }

type budgetReader struct {
	r io.Reader
	w *walker
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.w.bytesLeft <= 0 {
		return 0, errBudget
	}
	if int64(len(p)) > b.w.bytesLeft {
		p = p[:b.w.bytesLeft]
	}
	n, err := b.r.Read(p)
	b.w.bytesLeft -= int64(n)
	return n, err
}

// content inspects one entry of an archive at the given depth (the depth of the archive that holds it): its
// first bytes are sniffed for executables, and an entry that is an archive is walked in turn. The content is
// given either as a readAt over size bytes, or as open, which returns a reader from its start.
func (w *walker) content(name string, depth int, ra readAtFunc, size int64, open func() (io.Reader, error)) error {
	var head []byte
	var rest io.Reader
	if ra != nil {
		b, err := ra(0, int(min(size, headSize)))
		if err != nil {
			return err
		}
		head = b
	} else {
		r, err := open()
		if err != nil {
			return fmt.Errorf("%w: %q: %w", errDamaged, name, err)
		}
		rest = w.limit(r)
		head = make([]byte, headSize)
		n, err := io.ReadFull(rest, head)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return wrapRead(err, fmt.Sprintf("%q", name))
		}
		head = head[:n]
	}
	base := name[lastSeparator(name)+1:]
	sniffSize := size
	if ra == nil {
		sniffSize = int64(len(head)) // without random access, only what the head holds can be checked
	}
	kind := sniff(head, ra, sniffSize, true)
	// A "#!" first line is not held against an archive entry: source archives are full of scripts, and a
	// script from an archive needs to be made executable and run by hand.
	if kind != "" && kind != kindScript && w.cfg.sniff[kind] {
		w.add("archive:magic:"+kind, fmt.Sprintf("%q inside the archive (%s)", printable(base, 100), kindText[kind]))
	}
	ak := detectArchive(head, kind)
	if ak == "" {
		return nil
	}
	var cut io.Reader
	if rest != nil {
		cut = io.MultiReader(bytes.NewReader(head), rest)
	}
	err := w.archive(ak, depth, ra, size, cut)
	if errors.Is(err, errBudget) || errors.Is(err, errEntries) {
		return err
	}
	w.stopped(err) // a damaged or encrypted archive inside does not stop the walk of its siblings
	return nil
}

// archive walks an archive of the given kind at depth (0: the attachment itself), given as ra over size bytes
// or, when ra is nil, as the reader r from its start.
func (w *walker) archive(kind string, depth int, ra readAtFunc, size int64, r io.Reader) error {
	if w.cfg.opaque[kind] {
		w.add("archive:opaque:"+kind, opaqueText[kind])
		return nil
	}
	if _, listed := listedKinds[kind]; !listed {
		return nil
	}
	if depth >= w.cfg.archiveDepth {
		w.bound("archive-depth", fmt.Sprintf("archives nested more than %d deep", w.cfg.archiveDepth),
			fmt.Errorf("a %s archive at depth %d", kind, depth+1))
		return nil
	}
	stream := func() io.Reader {
		if r != nil {
			return r
		}
		return bufio.NewReaderSize(&seqReader{ra: ra, end: size}, bufSize(size, 32<<10))
	}
	switch kind {
	case archiveZip, archive7z:
		if ra == nil {
			// Both need random access: the entry is decompressed into memory, within the budget.
			data, err := io.ReadAll(r)
			if err != nil {
				return wrapRead(err, kind+" archive")
			}
			ra, size = bytesReadAt(data), int64(len(data))
		}
		if kind == archiveZip {
			return w.zipArchive(ra, size, depth+1)
		}
		return w.sevenZip(ra, size, depth+1)
	case archiveGzip:
		zr, err := gzip.NewReader(stream())
		if err != nil {
			return wrapRead(err, "gzip header")
		}
		// The name of the compressed file, which 7-Zip and WinRAR give the file they extract.
		if err := w.names(zr.Name); err != nil {
			return err
		}
		return w.content(zr.Name, depth+1, nil, -1, func() (io.Reader, error) { return zr, nil })
	case archiveBzip2:
		return w.content("", depth+1, nil, -1, func() (io.Reader, error) { return bzip2.NewReader(stream()), nil })
	case archiveXz:
		return w.content("", depth+1, nil, -1, func() (io.Reader, error) {
			return xz.ReaderConfig{DictCap: xzMaxDict}.NewReader(stream())
		})
	case archiveTar:
		return w.tarArchive(stream(), depth+1)
	case archiveRar:
		return w.rarArchive(stream(), depth+1)
	}
	return nil
}

// listedKinds are the kinds whose entries the plugin lists (the others are opaque).
var listedKinds = map[string]struct{}{
	archiveZip: {}, archive7z: {}, archiveRar: {}, archiveGzip: {}, archiveBzip2: {}, archiveXz: {}, archiveTar: {},
}

var opaqueText = map[string]string{
	archiveCab: "cabinet archive whose files are not listed",
	archiveISO: "disk image whose files are not listed",
	archiveImg: "disk image whose files are not listed",
	archiveVHD: "virtual disk whose files are not listed",
}

// tarArchive lists a tar stream (ustar, POSIX with PAX path records, GNU long names) and inspects each regular
// file's content.
func (w *walker) tarArchive(r io.Reader, depth int) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return wrapRead(err, "tar archive")
		}
		link := ""
		if h.Typeflag == tar.TypeSymlink {
			link = h.Linkname
		}
		if err := w.names(h.Name, link); err != nil {
			return err
		}
		if !h.FileInfo().Mode().IsRegular() {
			continue
		}
		if err := w.content(h.Name, depth, nil, h.Size, func() (io.Reader, error) { return tr, nil }); err != nil {
			return err
		}
	}
}

// rarArchive lists a RAR archive (1.5 to 5) from its file headers and inspects each file's content. RAR 5 can
// encrypt the headers, names included: such an archive cannot be listed without its password.
func (w *walker) rarArchive(r io.Reader, depth int) error {
	rr, err := rardecode.NewReader(&errReader{r: r}, rardecode.MaxDictionarySize(rarMaxDict))
	if err != nil {
		return rarError(err)
	}
	for {
		h, err := rr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return rarError(err)
		}
		if err := w.names(h.Name); err != nil {
			return err
		}
		if h.IsDir {
			continue
		}
		if h.Encrypted {
			w.encrypted(h.Name)
			continue
		}
		err = w.content(h.Name, depth, nil, h.UnPackedSize, func() (io.Reader, error) { return rr, nil })
		if err != nil {
			return rarError(err)
		}
	}
}

// errReader keeps the error of the reader under rardecode, which reports any read error as its own.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

func rarError(err error) error {
	switch {
	case errors.Is(err, errBudget), errors.Is(err, errEntries):
		return err
	case errors.Is(err, rardecode.ErrArchiveEncrypted):
		return fmt.Errorf("%w: %w", errEncryptedNames, err)
	case errors.Is(err, rardecode.ErrDictionaryTooLarge), errors.Is(err, rardecode.ErrUnknownDecoder):
		return fmt.Errorf("%w: %w", errUnsupported, err)
	}
	return wrapRead(err, "rar archive")
}

// sevenZip lists a 7z archive from its header (decoded first when it is compressed, as 7-Zip writes it) and
// inspects each file's content. A 7z archive can encrypt its header, names included.
func (w *walker) sevenZip(ra readAtFunc, size int64, depth int) error {
	// The library decodes the whole header in one go: it is charged first, from the signature header's size.
	if sig, err := ra(0, 32); err == nil && len(sig) == 32 {
		if err := w.charge(min(int64(binary.LittleEndian.Uint64(sig[20:28])), 1<<62)); err != nil {
			return err
		}
	}
	z, err := sevenzip.NewReader(readerAt{ra}, size)
	if err != nil {
		var re *sevenzip.ReadError
		if errors.As(err, &re) && re.Encrypted {
			return fmt.Errorf("%w: %w", errEncryptedNames, err)
		}
		return wrapRead(err, "7z archive")
	}
	for _, f := range z.File {
		if err := w.names(f.Name); err != nil {
			return err
		}
	}
	// In a solid archive, reaching a file decompresses the rest of the file before it in the same stream; the
	// files are read in order, so that is what is charged, besides what is read of each.
	skipped := map[int]uint64{}
	for _, f := range z.File {
		if f.FileInfo().IsDir() || f.UncompressedSize == 0 {
			continue
		}
		if err := w.charge(int64(min(skipped[f.Stream], 1<<62))); err != nil {
			return err
		}
		skipped[f.Stream] = f.UncompressedSize
		rc, err := f.Open()
		var re *sevenzip.ReadError
		if errors.As(err, &re) && re.Encrypted {
			w.encrypted(f.Name)
			continue
		}
		if err != nil {
			return wrapRead(err, "7z archive")
		}
		err = w.content(f.Name, depth, nil, int64(f.UncompressedSize), func() (io.Reader, error) { return rc, nil })
		rc.Close()
		if errors.As(err, &re) && re.Encrypted {
			w.encrypted(f.Name)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// wrapRead gives a read error its context; the budget errors pass unchanged, so callers can tell them apart.
func wrapRead(err error, what string) error {
	if errors.Is(err, errBudget) || errors.Is(err, errEntries) || errors.Is(err, errDamaged) {
		return err
	}
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return fmt.Errorf("%w: %s cut short", errDamaged, what)
	}
	return fmt.Errorf("%w: %s: %w", errDamaged, what, err)
}

// bufSize is the size of a read buffer for n bytes of content: at most limit, and no larger than the content
// (most archives in mail are small, and a buffer is allocated whole).
func bufSize(n int64, limit int) int {
	return int(max(16, min(n, int64(limit))))
}

// seqReader reads the range [off, end) of a readAt in order.
type seqReader struct {
	ra       readAtFunc
	off, end int64
}

func (s *seqReader) Read(p []byte) (int, error) {
	if s.off >= s.end {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), s.end-s.off))
	b, err := s.ra(s.off, n)
	if err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	s.off += int64(copy(p, b))
	return len(b), nil
}

// readerAt is an io.ReaderAt over a readAtFunc.
type readerAt struct{ ra readAtFunc }

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	b, err := r.ra(off, len(p))
	if err != nil {
		return 0, err
	}
	n := copy(p, b)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// bytesReadAt is a readAtFunc over content held in memory.
func bytesReadAt(data []byte) readAtFunc {
	return func(off int64, n int) ([]byte, error) {
		if off < 0 || off >= int64(len(data)) {
			return nil, nil
		}
		return data[off:min(off+int64(n), int64(len(data)))], nil
	}
}
