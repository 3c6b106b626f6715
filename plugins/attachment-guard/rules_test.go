package main

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

func codes(rs []reason) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Code)
	}
	return out
}

func TestCheckName(t *testing.T) {
	blocked := buildSet(defaultExtensions, nil, nil, nil, cleanExtension)
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"report.pdf", nil},
		{"setup.exe", []string{"extension:exe"}},
		{"SETUP.EXE", []string{"extension:exe"}},
		{"invoice.pdf.exe", []string{"extension:exe", "double-extension:pdf.exe"}},
		{"photo.jpg.scr", []string{"extension:scr", "double-extension:jpg.scr"}},
		{"invoice.pdf      .exe", []string{"extension:exe", "double-extension:pdf.exe"}},
		{"evil.exe.", []string{"extension:exe"}},
		{"evil.exe . . ", []string{"extension:exe"}},
		{"archive.tar.gz", nil},
		{"invoice\u202Efdp.exe", []string{"deceptive-name", "extension:exe"}},
		{"invoice\u202Etxt.pdf", []string{"deceptive-name"}},
		{"shortcut.lnk", []string{"extension:lnk"}},
		{"disk.iso", []string{"extension:iso"}},
		{"Settings.settingcontent-ms", []string{"extension:settingcontent-ms"}},
		{"exe", nil},
		{"", nil},
		{"notes.exe.txt", nil}, // the last extension is what runs
	} {
		if got := codes(checkName(tc.name, blocked)); !slices.Equal(got, tc.want) {
			t.Errorf("checkName(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestBuildSet(t *testing.T) {
	s := buildSet(defaultExtensions, nil, []string{".DOCM", " one "}, []string{"ISO", ".img"}, cleanExtension)
	for _, e := range []string{"exe", "docm", "one"} {
		if !s[e] {
			t.Errorf("%s missing from %v", e, s.sorted())
		}
	}
	for _, e := range []string{"iso", "img"} {
		if s[e] {
			t.Errorf("%s still in the set after remove", e)
		}
	}
	s = buildSet(defaultExtensions, []string{"exe"}, nil, nil, cleanExtension)
	if got := s.sorted(); !slices.Equal(got, []string{"exe"}) {
		t.Errorf("replaced set = %v, want [exe]", got)
	}
	s = buildSet(defaultExtensions, []string{}, nil, nil, cleanExtension)
	if len(s) != 0 {
		t.Errorf("an empty replacement list must empty the set, got %v", s.sorted())
	}
}

func TestCheckContentType(t *testing.T) {
	blocked := buildSet(defaultContentTypes, nil, nil, nil, cleanContentType)
	if got := codes(checkContentType("application/x-msdownload", blocked)); !slices.Equal(got, []string{"content-type:application/x-msdownload"}) {
		t.Errorf("got %q", got)
	}
	if got := checkContentType("application/pdf", blocked); got != nil {
		t.Errorf("application/pdf: got %v", got)
	}
}

// bytesReader adapts a byte slice to readAtFunc, counting calls so tests can check reads stay small.
type bytesReader struct {
	data  []byte
	calls int
	read  int
}

func (b *bytesReader) readAt(off int64, n int) ([]byte, error) {
	b.calls++
	if off < 0 {
		return nil, errors.New("negative offset")
	}
	if off >= int64(len(b.data)) {
		return nil, nil
	}
	end := min(off+int64(n), int64(len(b.data)))
	b.read += int(end - off)
	return b.data[off:end], nil
}

func peFile(lfanew uint32, total int) []byte {
	b := make([]byte, total)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3C:], lfanew)
	copy(b[lfanew:], "PE\x00\x00")
	return b
}

func TestSniff(t *testing.T) {
	iso := make([]byte, 0x9000)
	copy(iso[0x8001:], "CD001")
	javaClass := []byte{0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 52, 1, 2, 3}
	fatMachO := []byte{0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 2, 1, 2, 3}
	badPE := peFile(0x80, 1024)
	copy(badPE[0x80:], "NE\x00\x00")
	for _, tc := range []struct {
		name   string
		data   []byte
		isFile bool
		want   string
	}{
		{"PE", peFile(0x80, 1024), true, kindPE},
		{"PE header beyond the head", peFile(0x1000, 0x2000), false, kindPE},
		{"MZ text", []byte("MZ Holdings quarterly report, nothing executable here at all............"), false, ""},
		{"MZ with a pointer past the end", peFile(0x80, 1024)[:0x82], true, ""},
		{"MZ pointing at another signature", badPE, true, ""},
		{"ELF", []byte("\x7fELF\x02\x01\x01"), false, kindELF},
		{"Mach-O 64", []byte{0xCF, 0xFA, 0xED, 0xFE, 7, 0, 0, 1}, false, kindMachO},
		{"Mach-O 32 big-endian", []byte{0xFE, 0xED, 0xFA, 0xCE, 0, 0, 0, 7}, false, kindMachO},
		{"universal Mach-O", fatMachO, false, kindMachO},
		{"Java class", javaClass, false, kindJavaClass},
		{"LNK", append(slices.Clone(lnkHeader), 0, 0, 0), false, kindLNK},
		{"script file", []byte("#!/bin/sh\nrm -rf ~\n"), true, kindScript},
		{"script in a body", []byte("#!/bin/sh\nrm -rf ~\n"), false, ""},
		{"ISO 9660", iso, false, kindISO},
		{"plain text", []byte("hello"), true, ""},
		{"PDF", []byte("%PDF-1.7\n"), true, ""},
		{"empty", nil, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &bytesReader{data: tc.data}
			head := tc.data[:min(len(tc.data), headSize)]
			if got := sniff(head, r.readAt, int64(len(tc.data)), tc.isFile); got != tc.want {
				t.Errorf("sniff = %q, want %q", got, tc.want)
			}
			if r.read > 16 {
				t.Errorf("sniff read %d bytes beyond the head, want a few", r.read)
			}
		})
	}
}
