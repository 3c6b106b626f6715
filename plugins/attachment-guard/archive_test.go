package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// walk runs the archive walker over data as an attachment's content, with the JSON configuration cfgJSON, and
// returns the reason codes.
func walk(t *testing.T, cfgJSON string, data []byte) []string {
	t.Helper()
	s, err := parseConfig([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	r := &bytesReader{data: data}
	head := data[:min(len(data), headSize)]
	rs, notes := inspectArchive(&s, head, sniff(head, r.readAt, int64(len(data)), true), r.readAt, int64(len(data)))
	for _, n := range notes {
		t.Logf("note: %s", n)
	}
	return codes(rs)
}

// zipFile is one member of a test archive.
type zipFile struct {
	name   string
	data   []byte
	method uint16
}

func buildZip(t *testing.T, files ...zipFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, f := range files {
		fw, err := w.CreateHeader(&zip.FileHeader{Name: f.name, Method: f.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func deflated(name string, data []byte) zipFile { return zipFile{name, data, zip.Deflate} }
func stored(name string, data []byte) zipFile   { return zipFile{name, data, zip.Store} }

func wantReasons(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("reasons = %q, want %q", got, want)
	}
}

func TestZipAnyEntryCount(t *testing.T) {
	// 70,000 entries (archive/zip writes ZIP64 records past 65,535) with the executable last: every name is
	// read, within the byte budget.
	files := make([]zipFile, 70000)
	for i := range files {
		files[i] = stored(fmt.Sprintf("f%d.txt", i), []byte("x"))
	}
	files[len(files)-1] = stored("last.exe", []byte("x"))
	data := buildZip(t, files...)
	wantReasons(t, walk(t, "{}", data), "archive:extension:exe")

	// Past the entry budget, the attachment is incomplete: what was not listed was not inspected.
	wantReasons(t, walk(t, `{"archive_entries":1000}`, data), "incomplete:archive-entries")
	wantReasons(t, walk(t, `{"archive_entries":1000,"block_incomplete":false}`, data))
	// Past the byte budget likewise; the names read before it are still checked.
	wantReasons(t, walk(t, `{"archive_bytes":65536}`, data), "incomplete:archive-bytes")
}

func TestZipSelfExtractor(t *testing.T) {
	plain := buildZip(t, stored("payload.js", []byte("alert(1)")))
	// Data before the archive shifts every offset; archive/zip's SetOffset is not used, as a stub builder would not.
	sfx := append(bytes.Repeat([]byte("stub"), 1000), plain...)

	r := &bytesReader{data: sfx}
	w := newWalker(mustConfig(t, "{}"))
	if err := w.zipArchive(r.readAt, int64(len(sfx)), 1); err != nil {
		t.Fatal(err)
	}
	wantReasons(t, codes(w.reasons), "archive:extension:js")
}

func mustConfig(t *testing.T, js string) *settings {
	t.Helper()
	s, err := parseConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

func TestZipWithoutCentralDirectory(t *testing.T) {
	// archive/zip writes deflated members with data descriptors: a local scan must inflate to find their end.
	data := buildZip(t, deflated("readme.txt", bytes.Repeat([]byte("text "), 500)), stored("notes.txt", []byte("hi")),
		deflated("tool.exe", []byte("MZ not really")))
	dir := bytes.Index(data, []byte("PK\x01\x02"))
	wantReasons(t, walk(t, "{}", data[:dir]), "archive:extension:exe")
	// A directory cut in the middle: the local headers still give every name.
	wantReasons(t, walk(t, "{}", data[:dir+10]), "archive:extension:exe")
	// Garbage where the next local header should be: damaged.
	broken := slices.Clone(data[:dir])
	i := bytes.Index(broken, []byte("PK\x03\x04notes"))
	if i < 0 {
		i = bytes.LastIndex(broken[:bytes.Index(broken, []byte("tool.exe"))], []byte("PK\x03\x04"))
	}
	copy(broken[i:], "JUNK")
	wantReasons(t, walk(t, "{}", broken), "incomplete:archive-damaged")
	wantReasons(t, walk(t, `{"block_incomplete":false}`, broken))
	// Cut inside the first local header: no extractor finds a file in it.
	wantReasons(t, walk(t, "{}", data[:16]))
	// Cut after the first name: the name is checked, the rest is damaged.
	wantReasons(t, walk(t, "{}", data[:bytes.Index(data, []byte("readme.txt"))+12]), "incomplete:archive-damaged")
}

func TestZipConcatenated(t *testing.T) {
	// Two archives back to back: the end record is the second's; some extractors open the first.
	first := buildZip(t, stored("evil.exe", []byte("x")))
	second := buildZip(t, stored("fine.txt", []byte("y")))
	wantReasons(t, walk(t, "{}", append(slices.Clone(first), second...)), "archive:extension:exe")
	// Three: the middle one is found after the first one's directory.
	three := slices.Concat(buildZip(t, stored("a.txt", []byte("x"))), first, second)
	wantReasons(t, walk(t, "{}", three), "archive:extension:exe")
}

func TestZipNameDisagreements(t *testing.T) {
	// The local header names a.exe where the directory says a.txt: a streaming extractor creates a.exe.
	data := buildZip(t, stored("a.txt", []byte("x")))
	copy(data[zipLocalLen:], "a.exe")
	wantReasons(t, walk(t, "{}", data), "archive:extension:exe")

	// An Info-ZIP Unicode path extra field (shown by 7-Zip, WinRAR and unzip) that says b.exe.
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	field := []byte{1, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(field[1:], crc32.ChecksumIEEE([]byte("b.txt")))
	field = append(field, "b.exe"...)
	extra := binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(nil, 0x7075), uint16(len(field)))
	fw, err := w.CreateHeader(&zip.FileHeader{Name: "b.txt", Method: zip.Store, Extra: append(extra, field...)})
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte("x"))
	w.Close()
	wantReasons(t, walk(t, "{}", buf.Bytes()), "archive:extension:exe")
}

func TestZipEncryptedDirectory(t *testing.T) {
	// PKWARE central-directory encryption (flag bit 13): the names are masked, so nothing can be listed.
	data := buildZip(t, stored("a.txt", []byte("x")))
	flags := bytes.Index(data, []byte("PK\x01\x02")) + 8
	binary.LittleEndian.PutUint16(data[flags:], binary.LittleEndian.Uint16(data[flags:])|zipFlagMaskedDir)
	wantReasons(t, walk(t, "{}", data), "incomplete:archive-encrypted-names")
}

func TestZipContent(t *testing.T) {
	pe := peFile(0x80, 1024)
	// An executable named like a document, stored and deflated.
	wantReasons(t, walk(t, "{}", buildZip(t, stored("notes.txt", pe))), "archive:magic:pe")
	wantReasons(t, walk(t, "{}", buildZip(t, deflated("notes.txt", pe))), "archive:magic:pe")
	wantReasons(t, walk(t, `{"sniff":[]}`, buildZip(t, deflated("notes.txt", pe))))
	// A script is not held against an archive entry.
	wantReasons(t, walk(t, "{}", buildZip(t, deflated("configure", []byte("#!/bin/sh\necho hi\n")))))
	// A member in a method the plugin cannot decompress (deflate64): its content is not inspected.
	unsupported := buildZip(t, stored("data.bin", []byte("xxxx")))
	binary.LittleEndian.PutUint16(unsupported[8:], 9)
	binary.LittleEndian.PutUint16(unsupported[bytes.Index(unsupported, []byte("PK\x01\x02"))+10:], 9)
	wantReasons(t, walk(t, "{}", unsupported), "incomplete:archive-unsupported")
}

func TestNestedArchives(t *testing.T) {
	inner := buildZip(t, stored("deep/evil.exe", []byte("x")))
	// Named like a picture: nested archives are found by their content, not their name.
	level2 := buildZip(t, deflated("photo.jpg", inner))
	level3 := buildZip(t, stored("docs.zip", level2))
	wantReasons(t, walk(t, "{}", level3), "archive:extension:exe")
	wantReasons(t, walk(t, `{"archive_depth":3}`, level3), "archive:extension:exe")
	wantReasons(t, walk(t, `{"archive_depth":2}`, level3), "incomplete:archive-depth")
	wantReasons(t, walk(t, `{"archive_depth":2,"block_incomplete":false}`, level3))

	// gzip of tar of zip; the gzip header's file name is checked too.
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, f := range []struct {
		name string
		data []byte
	}{{"README", []byte("read me")}, {"bundle.dat", inner}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg})
		tw.Write(f.data)
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Name = "backup.tar"
	zw.Write(tb.Bytes())
	zw.Close()
	wantReasons(t, walk(t, "{}", gz.Bytes()), "archive:extension:exe")
	wantReasons(t, walk(t, `{"archive_depth":2}`, gz.Bytes()), "incomplete:archive-depth")

	zw = gzip.NewWriter(&gz)
	gz.Reset()
	zw.Name = "invoice.pdf.exe"
	zw.Write([]byte("not really"))
	zw.Close()
	wantReasons(t, walk(t, "{}", gz.Bytes()), "archive:extension:exe", "archive:double-extension:pdf.exe")

	// A zip bomb: a member decompressing to more than the budget, nested so that it must be decompressed.
	bomb := buildZip(t, deflated("big.zip", buildZip(t, stored("zeros.bin", make([]byte, 20<<20)))))
	wantReasons(t, walk(t, "{}", bomb), "incomplete:archive-bytes")
}

func TestDetectArchive(t *testing.T) {
	mbr := make([]byte, 512)
	mbr[510], mbr[511] = 0x55, 0xAA
	mbr[446+4] = 0x0C // FAT32 LBA
	binary.LittleEndian.PutUint32(mbr[446+12:], 2048)
	notMBR := slices.Clone(mbr)
	notMBR[446] = 0x12 // not a valid status
	tarHead := make([]byte, 512)
	copy(tarHead[257:], "ustar\x0000")
	for _, tc := range []struct {
		name string
		head []byte
		want string
	}{
		{"zip", []byte("PK\x03\x04...."), archiveZip},
		{"empty zip", []byte("PK\x05\x06...."), archiveZip},
		{"rar4", []byte("Rar!\x1A\x07\x00..."), archiveRar},
		{"rar5", []byte("Rar!\x1A\x07\x01\x00..."), archiveRar},
		{"7z", []byte("7z\xBC\xAF\x27\x1C\x00\x04"), archive7z},
		{"cab", []byte("MSCF\x00\x00\x00\x00...."), archiveCab},
		{"gzip", []byte{0x1F, 0x8B, 0x08, 0}, archiveGzip},
		{"bzip2", []byte("BZh91AY&SY...."), archiveBzip2},
		{"xz", []byte("\xFD7zXZ\x00..."), archiveXz},
		{"tar", tarHead, archiveTar},
		{"vhdx", []byte("vhdxfile...."), archiveVHD},
		{"mbr", mbr, archiveImg},
		{"0x55AA alone", notMBR, ""},
		{"text", []byte("PK is a nice name for a file"), ""},
	} {
		if got := detectArchive(tc.head, ""); got != tc.want {
			t.Errorf("%s: detectArchive = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestOpaqueArchives(t *testing.T) {
	cab := append([]byte("MSCF\x00\x00\x00\x00"), make([]byte, 100)...)
	wantReasons(t, walk(t, "{}", cab), "archive:opaque:cab")
	wantReasons(t, walk(t, `{"opaque_archives":["iso"]}`, cab))
	// Inside a zip, under an innocent name.
	wantReasons(t, walk(t, "{}", buildZip(t, deflated("data.bin", cab))), "archive:opaque:cab")
}

// rar5 builds a RAR 5 archive with stored files, or one whose headers are encrypted.
func rar5(names []string, encryptHeaders bool) []byte {
	vint := func(b []byte, v uint64) []byte {
		for v >= 0x80 {
			b = append(b, byte(v)|0x80)
			v >>= 7
		}
		return append(b, byte(v))
	}
	block := func(body []byte, data []byte) []byte {
		h := vint(nil, uint64(len(body)))
		h = append(h, body...)
		out := binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(h))
		return append(append(out, h...), data...)
	}
	out := []byte("Rar!\x1A\x07\x01\x00")
	if encryptHeaders {
		// Encryption header: type 4, no flags, version 0 (AES-256), no password check, KDF count, salt.
		body := vint(vint(vint(vint(nil, 4), 0), 0), 0)
		body = append(body, 15)
		body = append(body, make([]byte, 16)...)
		out = append(out, block(body, nil)...)
		return append(out, make([]byte, 64)...) // encrypted headers follow
	}
	out = append(out, block(vint(vint(vint(nil, 1), 0), 0), nil)...) // main archive header
	for _, n := range names {
		data := []byte("content of " + n)
		body := vint(nil, 2)                 // file header
		body = vint(body, 2)                 // header flags: a data area follows
		body = vint(body, uint64(len(data))) // data size
		body = vint(body, 0)                 // file flags
		body = vint(body, uint64(len(data))) // unpacked size
		body = vint(body, 0x20)              // attributes
		body = vint(body, 0)                 // compression: version 0, stored
		body = vint(body, 0)                 // host OS: Windows
		body = vint(body, uint64(len(n)))    // name length
		out = append(out, block(append(body, n...), data)...)
	}
	return append(out, block(vint(vint(vint(nil, 5), 0), 0), nil)...) // end of archive
}

// rar4 builds a RAR 1.5-4 archive with stored files, or one whose headers are encrypted (rar -hp).
func rar4(names []string, encryptHeaders bool) []byte {
	block := func(typ byte, flags uint16, body, data []byte) []byte {
		h := []byte{typ}
		h = binary.LittleEndian.AppendUint16(h, flags)
		h = binary.LittleEndian.AppendUint16(h, uint16(7+len(body)))
		h = append(h, body...)
		out := binary.LittleEndian.AppendUint16(nil, uint16(crc32.ChecksumIEEE(h)))
		return append(append(out, h...), data...)
	}
	out := []byte("Rar!\x1A\x07\x00")
	var mainFlags uint16
	if encryptHeaders {
		mainFlags = 0x0080 // MHD_PASSWORD: every header after this one is encrypted
	}
	out = append(out, block(0x73, mainFlags, make([]byte, 6), nil)...)
	if encryptHeaders {
		return append(out, make([]byte, 64)...)
	}
	for _, n := range names {
		data := []byte("content of " + n)
		body := binary.LittleEndian.AppendUint32(nil, uint32(len(data))) // packed size
		body = binary.LittleEndian.AppendUint32(body, uint32(len(data))) // unpacked size
		body = append(body, 2)                                           // host OS: Windows
		body = binary.LittleEndian.AppendUint32(body, crc32.ChecksumIEEE(data))
		body = binary.LittleEndian.AppendUint32(body, 0x5A210000) // DOS time
		body = append(body, 29, 0x30)                             // version 2.9, stored
		body = binary.LittleEndian.AppendUint16(body, uint16(len(n)))
		body = binary.LittleEndian.AppendUint32(body, 0x20) // attributes
		out = append(out, block(0x74, 0x8000, append(body, n...), data)...)
	}
	return append(out, block(0x7B, 0x4000, nil, nil)...)
}

func TestRar(t *testing.T) {
	wantReasons(t, walk(t, "{}", rar4([]string{"readme.txt", "bin\\setup.exe"}, false)), "archive:extension:exe")
	wantReasons(t, walk(t, "{}", rar4([]string{"readme.txt"}, false)))
	wantReasons(t, walk(t, "{}", rar4(nil, true)), "incomplete:archive-encrypted-names")
	wantReasons(t, walk(t, "{}", rar5([]string{"readme.txt", "bin/setup.exe"}, false)), "archive:extension:exe")
	wantReasons(t, walk(t, "{}", rar5([]string{"readme.txt"}, false)))
	wantReasons(t, walk(t, "{}", rar5(nil, true)), "incomplete:archive-encrypted-names")
	// Damaged: a header CRC that does not match.
	bad := rar5([]string{"readme.txt"}, false)
	bad[len(bad)-8] ^= 0xFF
	wantReasons(t, walk(t, "{}", bad), "incomplete:archive-damaged")
}

// tool runs a command-line archiver from Debian in dir. Without it the test is skipped, except in CI, where
// .ci/deps installs it.
func tool(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (.ci/deps installs it)", name)
		}
		t.Skipf("%s is not installed (.ci/deps installs it)", name)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// archiveDir returns a temporary folder with a document and an executable to archive.
func archiveDir(t *testing.T) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "report.txt"), []byte(strings.Repeat("quarterly numbers\n", 100)), 0o644)
	os.WriteFile(filepath.Join(dir, "setup.exe"), peFile(0x80, 4096), 0o644)
	return dir
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDebianArchivers(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  []string
		file string
		want []string
	}{
		{"zip", []string{"zip", "-q", "a.zip", "report.txt", "setup.exe"}, "a.zip", []string{"archive:extension:exe", "archive:magic:pe"}},
		{"zip clean", []string{"zip", "-q", "a.zip", "report.txt"}, "a.zip", nil},
		{"zip encrypted", []string{"zip", "-q", "-P", "secret", "a.zip", "report.txt"}, "a.zip", []string{"archive:encrypted"}},
		{"zip AES", []string{"7z", "a", "-tzip", "-psecret", "-mem=AES256", "a.zip", "report.txt"}, "a.zip", []string{"archive:encrypted"}},
		{"zip bzip2", []string{"7z", "a", "-tzip", "-mm=BZip2", "a.zip", "report.txt", "setup.exe"}, "a.zip", []string{"archive:extension:exe", "archive:magic:pe"}},
		{"7z", []string{"7z", "a", "a.7z", "report.txt", "setup.exe"}, "a.7z", []string{"archive:extension:exe", "archive:magic:pe"}},
		{"7z clean", []string{"7z", "a", "a.7z", "report.txt"}, "a.7z", nil},
		{"7z encrypted content", []string{"7z", "a", "-psecret", "a.7z", "report.txt"}, "a.7z", []string{"archive:encrypted"}},
		{"7z encrypted names", []string{"7z", "a", "-psecret", "-mhe=on", "a.7z", "setup.exe"}, "a.7z", []string{"incomplete:archive-encrypted-names"}},
		{"tar.xz", []string{"tar", "-cJf", "a.tar.xz", "report.txt", "setup.exe"}, "a.tar.xz", []string{"archive:extension:exe", "archive:magic:pe"}},
		{"tar.bz2", []string{"tar", "-cjf", "a.tar.bz2", "report.txt", "setup.exe"}, "a.tar.bz2", []string{"archive:extension:exe", "archive:magic:pe"}},
		{"tar.gz clean", []string{"tar", "-czf", "a.tgz", "report.txt"}, "a.tgz", nil},
		{"cab", []string{"gcab", "-c", "a.cab", "report.txt"}, "a.cab", []string{"archive:opaque:cab"}},
		{"iso", []string{"genisoimage", "-quiet", "-J", "-o", "a.iso", "report.txt"}, "a.iso", []string{"archive:opaque:iso"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := archiveDir(t)
			tool(t, dir, tc.cmd[0], tc.cmd[1:]...)
			wantReasons(t, walk(t, "{}", readFile(t, filepath.Join(dir, tc.file))), tc.want...)
		})
	}
	t.Run("FAT image in a zip", func(t *testing.T) {
		dir := archiveDir(t)
		tool(t, dir, "mkfs.fat", "-C", "disk.img", "1440")
		tool(t, dir, "mcopy", "-i", "disk.img", "setup.exe", "::setup.exe")
		tool(t, dir, "mv", "disk.img", "holiday.dat")
		tool(t, dir, "zip", "-q", "a.zip", "holiday.dat")
		img := readFile(t, filepath.Join(dir, "holiday.dat"))
		wantReasons(t, walk(t, "{}", img), "archive:opaque:img")
		wantReasons(t, walk(t, "{}", readFile(t, filepath.Join(dir, "a.zip"))), "archive:opaque:img")
	})
}

// FuzzArchive walks arbitrary content as an attachment. The walk must end, within its budget, without a panic
// (inspectArchive would turn one into a damaged archive; this calls the walk directly so a panic is seen).
func FuzzArchive(f *testing.F) {
	f.Add(buildZip(&testing.T{}, stored("a.txt", []byte("x")), deflated("b.exe", []byte("MZ"))))
	f.Add(buildZip(&testing.T{}, stored("in.zip", buildZip(&testing.T{}, deflated("c.txt", []byte("y"))))))
	f.Add(rar5([]string{"a.txt"}, false))
	f.Add(rar5(nil, true))
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	s := mustConfigF(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		head := data[:min(len(data), headSize)]
		r := &bytesReader{data: data}
		kind := detectArchive(head, sniff(head, r.readAt, int64(len(data)), true))
		if kind == "" {
			return
		}
		w := newWalker(s)
		w.stopped(w.archive(kind, 0, w.charged(windowed(r.readAt, int64(len(data)))), int64(len(data)), nil))
		if w.bytesLeft < 0 {
			t.Errorf("budget overspent: %d", w.bytesLeft)
		}
	})
}

func mustConfigF(f *testing.F) *settings {
	s, err := parseConfig([]byte(`{"archive_bytes":1048576}`))
	if err != nil {
		f.Fatal(err)
	}
	return &s
}
