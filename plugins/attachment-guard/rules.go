package main

import (
	"sort"
	"strings"
	"unicode"
)

// defaultExtensions are file types Windows (and in a few cases macOS or Java) will run, open as a disk, or
// hand to a script host when the user double-clicks the attachment. The list follows the file types Gmail
// and Outlook refuse as attachments, plus the disk images and shortcut formats used to smuggle executables past
// Mark-of-the-Web. Documents (including macro-enabled ones) are not on it: they need content analysis, not a
// name rule.
var defaultExtensions = []string{
	"ade", "adp", "apk", "app", "application", "appref-ms", "appx", "appxbundle", "bas", "bat", "cab", "chm",
	"cmd", "com", "cpl", "diagcab", "diagcfg", "diagpack", "dll", "dmg", "ex_", "exe", "gadget", "hlp",
	"hta", "img", "inf", "ins", "iso", "isp", "jar", "jnlp", "js", "jse", "lib", "library-ms", "lnk", "mde",
	"msc", "msh", "msh1", "msh2", "mshxml", "msi", "msix", "msixbundle", "msp", "mst", "nsh", "pif", "ps1",
	"ps1xml", "ps2", "ps2xml", "psc1", "psc2", "psd1", "psm1", "reg", "scf", "scr", "sct", "search-ms",
	"settingcontent-ms", "shb", "shs", "sys", "url", "vb", "vbe", "vbs", "vhd", "vhdx", "vxd", "website", "wsb",
	"wsc", "wsf", "wsh", "xbap", "xll",
}

// defaultContentTypes are declared media types of executables and scripts. A sender that declares one of these
// means it; one that lies is caught by the name or the content.
var defaultContentTypes = []string{
	"application/hta",
	"application/java-archive",
	"application/javascript",
	"application/vnd.microsoft.portable-executable",
	"application/vnd.ms-cab-compressed",
	"application/x-apple-diskimage",
	"application/x-bat",
	"application/x-dosexec",
	"application/x-elf",
	"application/x-executable",
	"application/x-iso9660-image",
	"application/x-java-archive",
	"application/x-javascript",
	"application/x-mach-binary",
	"application/x-ms-application",
	"application/x-ms-dos-executable",
	"application/x-ms-installer",
	"application/x-ms-shortcut",
	"application/x-msdos-program",
	"application/x-msdownload",
	"application/x-msi",
	"application/x-powershell",
	"application/x-sharedlib",
	"application/x-vbscript",
	"text/javascript",
	"text/vbscript",
}

// decoyExtensions are the extensions a double-extension trick puts before the real one so that the file looks
// like a document ("invoice.pdf.exe", "photo.jpg.scr").
var decoyExtensions = map[string]bool{
	"pdf": true, "doc": true, "docx": true, "xls": true, "xlsx": true, "ppt": true, "pptx": true, "rtf": true,
	"txt": true, "csv": true, "odt": true, "ods": true, "jpg": true, "jpeg": true, "png": true, "gif": true,
	"bmp": true, "tif": true, "tiff": true, "mp3": true, "mp4": true, "avi": true, "mov": true, "wav": true,
	"zip": true, "rar": true, "7z": true, "htm": true, "html": true, "xml": true, "eml": true, "msg": true,
}

// set is a set of lower-case strings (extensions without the dot, or media types).
type set map[string]bool

// buildSet starts from base (or from replace, when the configuration gives a full list), then adds and removes.
// Entries are lower-cased and a leading dot is dropped, so ".EXE" and "exe" are the same entry.
func buildSet(base, replace, add, remove []string, clean func(string) string) set {
	s := set{}
	if replace != nil {
		base = replace
	}
	for _, v := range base {
		if v = clean(v); v != "" {
			s[v] = true
		}
	}
	for _, v := range add {
		if v = clean(v); v != "" {
			s[v] = true
		}
	}
	for _, v := range remove {
		delete(s, clean(v))
	}
	return s
}

// cleanExtension normalises a configured extension: lower case, no surrounding space, no leading dot.
func cleanExtension(e string) string {
	return strings.TrimPrefix(strings.ToLower(strings.TrimSpace(e)), ".")
}

// cleanContentType normalises a configured media type: lower case, no parameters.
func cleanContentType(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	if i := strings.IndexByte(t, ';'); i >= 0 {
		t = strings.TrimSpace(t[:i])
	}
	return t
}

// sorted returns the set's members in order, for documentation, errors and tests.
func (s set) sorted() []string {
	out := make([]string, 0, len(s))
	for v := range s {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// reason is one thing found about an attachment. Code is a stable token for tags and policies
// (extension:exe, double-extension:pdf.exe, deceptive-name, content-type:application/x-msdownload, magic:pe,
// archive-entry:exe); Text is a phrase for reply texts and notes.
type reason struct {
	Code, Text string
}

// normalizeName prepares a file name for the extension rules. The host already decoded RFC 2231 and RFC 2047,
// applied NFC and removed trailing dots and spaces; this repeats the trimming (Windows ignores trailing dots
// and spaces, so "evil.exe. " runs as evil.exe) so the plugin is safe on its own, and lower-cases.
func normalizeName(name string) string {
	name = strings.TrimRightFunc(name, func(r rune) bool { return r == '.' || unicode.IsSpace(r) })
	return strings.ToLower(name)
}

// extensions returns the last and the second-to-last extension of a normalized file name ("" if absent). White
// space around an extension is dropped: "invoice.pdf      .exe" has the extensions "pdf" and "exe".
func extensions(name string) (last, prev string) {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return "", ""
	}
	last = strings.TrimSpace(name[i+1:])
	rest := strings.TrimRightFunc(name[:i], unicode.IsSpace)
	if j := strings.LastIndexByte(rest, '.'); j >= 0 {
		prev = strings.TrimSpace(rest[j+1:])
	}
	return last, prev
}

// hasBidiControl reports whether the name holds a Unicode bidirectional control character. A right-to-left
// override makes "invoice\u202Efdp.exe" display as "invoiceexe.pdf"; no honest file name needs one.
func hasBidiControl(name string) bool {
	return strings.ContainsFunc(name, func(r rune) bool {
		switch r {
		case '\u200E', '\u200F', '\u061C', '\u202A', '\u202B', '\u202C', '\u202D', '\u202E',
			'\u2066', '\u2067', '\u2068', '\u2069':
			return true
		}
		return false
	})
}

// checkName applies the name rules to one file name (of an attachment or of an archive entry).
func checkName(name string, blocked set) []reason {
	if name == "" {
		return nil
	}
	var rs []reason
	n := normalizeName(name)
	if hasBidiControl(n) {
		rs = append(rs, reason{"deceptive-name", "file name with a hidden text-direction override"})
	}
	last, prev := extensions(n)
	if last != "" && blocked[last] {
		rs = append(rs, reason{"extension:" + last, "file type ." + last})
		if decoyExtensions[prev] {
			rs = append(rs, reason{"double-extension:" + prev + "." + last, "." + last + " disguised as ." + prev})
		}
	}
	return rs
}

// checkContentType applies the declared media type rule.
func checkContentType(ct string, blocked set) []reason {
	if ct = cleanContentType(ct); blocked[ct] {
		return []reason{{"content-type:" + ct, "declared type " + ct}}
	}
	return nil
}
