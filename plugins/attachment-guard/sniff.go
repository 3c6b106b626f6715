package main

import (
	"bytes"
	"encoding/binary"
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
		// "BEA01" starts the volume recognition sequence of a UDF image, which Windows mounts as well.
		if b, err := readAt(0x8001, 5); err == nil && (string(b) == "CD001" || string(b) == "BEA01") {
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

// Archive and disk-image kinds, recognised by their magic, never by their name. They are the names used in the
// "opaque_archives" configuration key and in archive:opaque:<kind> reasons.
const (
	archiveZip   = "zip"
	archiveRar   = "rar" // RAR 1.5 to 4 and RAR 5
	archive7z    = "7z"
	archiveCab   = "cab"   // Microsoft Cabinet
	archiveISO   = "iso"   // ISO 9660 or UDF optical disc image
	archiveImg   = "img"   // raw disk image: FAT, NTFS or exFAT boot sector, or an MBR partition table
	archiveVHD   = "vhd"   // Hyper-V virtual disk (VHD with a dynamic header, VHDX)
	archiveGzip  = "gzip"  // compresses one file
	archiveBzip2 = "bzip2" // compresses one file
	archiveXz    = "xz"    // compresses one file
	archiveTar   = "tar"   // ustar, POSIX and GNU tar
)

// opaqueKinds are the archive and disk-image kinds whose entries the plugin does not list: Windows opens each of
// them with a double-click (Explorer mounts disk images, expands cabinets), and each can carry executables.
var opaqueKinds = []string{archiveCab, archiveISO, archiveImg, archiveVHD}

// detectArchive names the archive or disk-image kind of content from its first bytes (head, at most headSize),
// or returns "". sniffed is what sniff found: the ISO 9660 signature lies past the head and sniff has read it.
func detectArchive(head []byte, sniffed string) string {
	switch {
	case sniffed == kindISO:
		return archiveISO
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")),
		bytes.HasPrefix(head, []byte("PK\x07\x08PK\x03\x04")), bytes.HasPrefix(head, []byte("PK00PK\x03\x04")):
		// A local file header, an empty archive, or the marker a split archive of one segment starts with.
		return archiveZip
	case bytes.HasPrefix(head, []byte("Rar!\x1A\x07\x00")), bytes.HasPrefix(head, []byte("Rar!\x1A\x07\x01\x00")):
		return archiveRar
	case bytes.HasPrefix(head, []byte("7z\xBC\xAF\x27\x1C")):
		return archive7z
	case bytes.HasPrefix(head, []byte("MSCF\x00\x00\x00\x00")):
		return archiveCab
	case bytes.HasPrefix(head, []byte{0x1F, 0x8B, 0x08}):
		return archiveGzip
	case len(head) >= 10 && string(head[:3]) == "BZh" && head[3] >= '1' && head[3] <= '9' &&
		(string(head[4:10]) == "1AY&SY" || string(head[4:10]) == "\x17\x72\x45\x38\x50\x90"):
		return archiveBzip2
	case bytes.HasPrefix(head, []byte("\xFD7zXZ\x00")):
		return archiveXz
	case len(head) >= 263 && string(head[257:262]) == "ustar":
		return archiveTar
	case bytes.HasPrefix(head, []byte("vhdxfile")), bytes.HasPrefix(head, []byte("conectix")):
		return archiveVHD
	case isDiskImage(head):
		return archiveImg
	}
	return ""
}

// isDiskImage recognises the first sector of a raw disk image: a FAT, NTFS or exFAT boot sector, or a master
// boot record whose partition table is plausible. Each needs the 0x55AA boot signature and more, so that a
// file that happens to have those two bytes at 510 is not taken for a disk.
func isDiskImage(head []byte) bool {
	if len(head) < 512 || head[510] != 0x55 || head[511] != 0xAA {
		return false
	}
	if string(head[3:11]) == "NTFS    " || string(head[3:11]) == "EXFAT   " {
		return true
	}
	// FAT: a jump instruction, a power-of-two sector size and a file system type in the BPB.
	if (head[0] == 0xEB && head[2] == 0x90) || head[0] == 0xE9 {
		bps := binary.LittleEndian.Uint16(head[11:13])
		if bps >= 512 && bps <= 4096 && bps&(bps-1) == 0 &&
			(string(head[54:59]) == "FAT12" || string(head[54:59]) == "FAT16" || string(head[82:87]) == "FAT32") {
			return true
		}
	}
	// MBR: four 16-byte entries at 446; each is empty or has a status of 0x00/0x80, a type and a size.
	used := 0
	for i := 0; i < 4; i++ {
		e := head[446+16*i : 446+16*(i+1)]
		if e[4] == 0 {
			if !bytes.Equal(e, make([]byte, 16)) {
				return false
			}
			continue
		}
		if (e[0] != 0 && e[0] != 0x80) || binary.LittleEndian.Uint32(e[12:16]) == 0 {
			return false
		}
		used++
	}
	return used > 0
}
