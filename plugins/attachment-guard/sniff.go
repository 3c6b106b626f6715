package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// readAtFunc reads up to n bytes of a part's decoded content at offset off. It returns fewer bytes at the end
// of the content; an error means the content cannot be read (it does not happen for offsets past the end).
type readAtFunc func(off int64, n int) ([]byte, error)

// headSize is how much of each part's decoded content the sniffer looks at first. Every signature below lies
// in it except the PE header (found through the pointer at 0x3C) and ISO 9660's volume descriptor at 32 KiB.
const headSize = 512

// Kinds of content the sniffer recognises. They are the names used in the "sniff" configuration key and in
// magic:<kind> reasons.
const (
	kindPE        = "pe"         // Windows executable or DLL (MZ header pointing at a PE signature)
	kindELF       = "elf"        // Linux/Unix executable or shared library
	kindMachO     = "macho"      // macOS executable, thin or universal
	kindJavaClass = "java-class" // compiled Java class (shares its magic with universal Mach-O)
	kindLNK       = "lnk"        // Windows shortcut (Shell Link)
	kindScript    = "script"     // "#!" interpreter script, only for parts that are files (named or attachments)
	kindISO       = "iso"        // ISO 9660 disk image (mounts with a double-click on Windows)
)

// allKinds is the default "sniff" list.
var allKinds = []string{kindPE, kindELF, kindMachO, kindJavaClass, kindLNK, kindScript, kindISO}

// lnkHeader is the fixed start of a Shell Link file: header size 0x4C and CLSID 00021401-0000-0000-C000-000000000046.
var lnkHeader = []byte{0x4C, 0, 0, 0, 0x01, 0x14, 0x02, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0x46}

// sniff identifies executable content from its first bytes (head, at most headSize) and, where a format needs
// it, a few more bytes read through readAt. size is the content's total length. isFile says whether the part
// is a file (has a name or is an attachment): only then does a "#!" first line count, because a message body
// may well start with one when someone pastes a script. It returns "" for content that is none of the kinds.
func sniff(head []byte, readAt readAtFunc, size int64, isFile bool) string {
	switch {
	case bytes.HasPrefix(head, []byte("MZ")):
		if isPE(head, readAt, size) {
			return kindPE
		}
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return kindELF
	case bytes.HasPrefix(head, []byte{0xFE, 0xED, 0xFA, 0xCE}), bytes.HasPrefix(head, []byte{0xFE, 0xED, 0xFA, 0xCF}),
		bytes.HasPrefix(head, []byte{0xCE, 0xFA, 0xED, 0xFE}), bytes.HasPrefix(head, []byte{0xCF, 0xFA, 0xED, 0xFE}):
		return kindMachO
	case bytes.HasPrefix(head, []byte{0xCA, 0xFE, 0xBA, 0xBE}) && len(head) >= 8:
		// A universal Mach-O stores its number of architectures here (a handful); a Java class its
		// major.minor version, and Java 1.1 already is major 45.
		if binary.BigEndian.Uint32(head[4:8]) < 45 {
			return kindMachO
		}
		return kindJavaClass
	case bytes.HasPrefix(head, lnkHeader):
		return kindLNK
	case isFile && (bytes.HasPrefix(head, []byte("#!/")) || bytes.HasPrefix(head, []byte("#! /"))):
		return kindScript
	}
	// ISO 9660: "CD001" in the first volume descriptor, sector 16 (byte 32769). Only worth a read when the
	// content is big enough to be an image.
	if size >= 0x8006 && readAt != nil {
		if b, err := readAt(0x8001, 5); err == nil && string(b) == "CD001" {
			return kindISO
		}
	}
	return ""
}

// isPE checks that an MZ header's e_lfanew (at 0x3C) points at "PE\0\0". A bare "MZ" is too weak: it is
// also how some text starts, and a DOS-only program does not run on a current Windows.
func isPE(head []byte, readAt readAtFunc, size int64) bool {
	if len(head) < 0x40 {
		return false
	}
	off := int64(binary.LittleEndian.Uint32(head[0x3C:0x40]))
	if off < 0x40 || off+4 > size || off > 1<<20 {
		return false
	}
	var sig []byte
	if off+4 <= int64(len(head)) {
		sig = head[off : off+4]
	} else if readAt != nil {
		b, err := readAt(off, 4)
		if err != nil {
			return false
		}
		sig = b
	}
	return string(sig) == "PE\x00\x00"
}

// Bounds for reading a ZIP central directory inside the guest.
const (
	zipMaxDirBytes = 4 << 20 // the central directory is read whole; a larger one is reported, not read
	zipMaxEntries  = 10000   // names past this many are not looked at (and that is reported)
	zipEOCDLen     = 22
	zipMaxComment  = 0xFFFF
)

// errZipLimit is wrapped by zipEntryNames when a bound stopped it; the names read so far are still returned.
var errZipLimit = errors.New("zip directory past the plugin's limits")

// isZip reports whether content starts like a ZIP archive (a local file header, or an empty archive).
func isZip(head []byte) bool {
	return bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06"))
}

// zipEntryNames lists the file names in a ZIP archive's central directory without decompressing anything:
// the names are what the extension rules need, and they are stored in clear even in encrypted archives. It
// finds the end-of-central-directory record in the last 64 KiB, follows a ZIP64 locator if there is one,
// allows for data prepended to the archive (self-extractors), and stops at zipMaxEntries entries or
// zipMaxDirBytes of directory.
func zipEntryNames(readAt readAtFunc, size int64) ([]string, error) {
	tailLen := int64(zipEOCDLen + zipMaxComment)
	if tailLen > size {
		tailLen = size
	}
	tail, err := readAt(size-tailLen, int(tailLen))
	if err != nil {
		return nil, fmt.Errorf("reading zip end record: %w", err)
	}
	i := bytes.LastIndex(tail, []byte("PK\x05\x06"))
	if i < 0 || len(tail)-i < zipEOCDLen {
		return nil, errors.New("no zip end-of-central-directory record")
	}
	eocd := tail[i:]
	eocdOff := size - tailLen + int64(i)
	entries := int64(binary.LittleEndian.Uint16(eocd[10:12]))
	dirSize := int64(binary.LittleEndian.Uint32(eocd[12:16]))
	dirOff := int64(binary.LittleEndian.Uint32(eocd[16:20]))
	if entries == 0xFFFF || dirSize == 0xFFFFFFFF || dirOff == 0xFFFFFFFF {
		// ZIP64: the locator sits just before the end record and points at the ZIP64 end record.
		if eocdOff < 20 {
			return nil, errors.New("zip64 archive without a locator")
		}
		loc, err := readAt(eocdOff-20, 20)
		if err != nil || len(loc) < 20 || string(loc[:4]) != "PK\x06\x07" {
			return nil, errors.New("zip64 archive without a locator")
		}
		rec64 := int64(binary.LittleEndian.Uint64(loc[8:16]))
		if rec64 < 0 || rec64 > size-56 {
			return nil, errors.New("zip64 end record out of range")
		}
		r, err := readAt(rec64, 56)
		if err != nil || len(r) < 56 || string(r[:4]) != "PK\x06\x06" {
			return nil, errors.New("bad zip64 end record")
		}
		entries = int64(binary.LittleEndian.Uint64(r[32:40]))
		dirSize = int64(binary.LittleEndian.Uint64(r[40:48]))
		dirOff = int64(binary.LittleEndian.Uint64(r[48:56]))
		eocdOff = rec64
	}
	if dirSize < 0 || dirSize > eocdOff {
		return nil, errors.New("zip central directory out of range")
	}
	// The directory ends where the end record starts; if the recorded offset disagrees, the archive was
	// prefixed with other data (a self-extractor stub) and every offset is shifted by the same amount.
	start := eocdOff - dirSize
	if dirOff > start {
		return nil, errors.New("zip central directory out of range")
	}
	var limitErr error
	if dirSize > zipMaxDirBytes {
		dirSize = zipMaxDirBytes
		limitErr = fmt.Errorf("%w: central directory larger than %d bytes", errZipLimit, zipMaxDirBytes)
	}
	dir, err := readAt(start, int(dirSize))
	if err != nil {
		return nil, fmt.Errorf("reading zip central directory: %w", err)
	}
	var names []string
	for len(dir) >= 46 && string(dir[:4]) == "PK\x01\x02" {
		if len(names) == zipMaxEntries {
			return names, fmt.Errorf("%w: more than %d entries", errZipLimit, zipMaxEntries)
		}
		nameLen := int(binary.LittleEndian.Uint16(dir[28:30]))
		extraLen := int(binary.LittleEndian.Uint16(dir[30:32]))
		commentLen := int(binary.LittleEndian.Uint16(dir[32:34]))
		if 46+nameLen > len(dir) {
			break
		}
		names = append(names, string(dir[46:46+nameLen]))
		next := 46 + nameLen + extraLen + commentLen
		if next > len(dir) {
			break
		}
		dir = dir[next:]
	}
	if limitErr != nil {
		return names, limitErr
	}
	if int64(len(names)) < entries && entries <= zipMaxEntries {
		return names, fmt.Errorf("zip central directory lists %d of %d entries", len(names), entries)
	}
	return names, nil
}
