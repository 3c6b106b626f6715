package main

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/postern/postern/sdk/postern"
)

// The actions the plugin can take with a message that has a blocked attachment: strip removes the attachments.
const (
	actionReject     = postern.ActionReject
	actionStrip      = postern.Action("strip")
	actionQuarantine = postern.ActionQuarantine
	actionTag        = postern.ActionTag
)

// config is the plugin's JSON configuration; README.md documents every key.
type config struct {
	Action postern.Action `json:"action"`

	Extensions       []string `json:"extensions"` // replaces the default list when given
	AddExtensions    []string `json:"add_extensions"`
	RemoveExtensions []string `json:"remove_extensions"`

	ContentTypes       []string `json:"content_types"` // replaces the default list when given
	AddContentTypes    []string `json:"add_content_types"`
	RemoveContentTypes []string `json:"remove_content_types"`

	Sniff    []string `json:"sniff"` // content kinds to recognise; replaces the default (all) when given
	Archives *bool    `json:"archives"`
	// Bounds of the walk through one attachment's archives; past any of them the attachment is incomplete.
	ArchiveDepth   *int   `json:"archive_depth"`   // archive levels opened, the attachment's own included
	ArchiveBytes   *int64 `json:"archive_bytes"`   // bytes read or decompressed
	ArchiveEntries *int   `json:"archive_entries"` // entries listed
	BlockEncrypted *bool  `json:"block_encrypted"` // block an archive with an encrypted entry
	// OpaqueArchives are the archive and disk-image kinds whose entries are not listed that block an attachment;
	// replaces the default (all) when given.
	OpaqueArchives []string `json:"opaque_archives"`
	// BlockIncomplete blocks a message the host could not index completely (a size, depth, part, header or
	// line limit stopped it): what was not indexed was not inspected.
	BlockIncomplete *bool `json:"block_incomplete"`
	// TextBodies also inspects messages that are nothing but inline, unnamed text/plain and text/html bodies
	// (their content is sniffed like any part's); by default the host skips the plugin for them.
	TextBodies bool `json:"text_bodies"`

	Code        int     `json:"code"`
	StripNote   *string `json:"strip_note"`
	StripHeader *string `json:"strip_header"`
	Score       float64 `json:"score"`
}

// settings is a parsed, validated configuration.
type settings struct {
	action       postern.Action
	extensions   set
	contentTypes set
	sniff        set
	archives     bool
	incomplete   bool
	textBodies   bool

	archiveDepth   int
	archiveBytes   int64
	archiveEntries int
	blockEncrypted bool
	opaque         set

	code        int
	stripNote   string
	stripHeader string
	score       float64
}

const (
	defaultStripNote   = "Postern removed {count} attachment(s) from this message because they can run code: {files}."
	defaultStripHeader = "X-Postern-Attachments-Removed"

	defaultArchiveDepth   = 8
	defaultArchiveBytes   = 16 << 20
	defaultArchiveEntries = 100000
	maxArchiveBytes       = 256 << 20 // a nested ZIP or 7z archive is decompressed into guest memory
)

// parseConfig reads the JSON configuration over the defaults. Unknown keys and bad values are errors, so the
// plugin fails to load instead of quietly protecting less than its administrator believes.
func parseConfig(data []byte) (settings, error) {
	c := config{Action: actionReject}
	if err := postern.DecodeConfig(data, &c); err != nil {
		return settings{}, fmt.Errorf("attachment-guard configuration: %w", err)
	}
	if err := c.Action.Check(actionReject, actionStrip, actionQuarantine, actionTag); err != nil {
		return settings{}, fmt.Errorf("attachment-guard configuration: %w", err)
	}
	s := settings{
		action:       c.Action,
		extensions:   buildSet(defaultExtensions, c.Extensions, c.AddExtensions, c.RemoveExtensions, cleanExtension),
		contentTypes: buildSet(defaultContentTypes, c.ContentTypes, c.AddContentTypes, c.RemoveContentTypes, cleanContentType),
		sniff:        buildSet(allKinds, c.Sniff, nil, nil, strings.ToLower),
		archives:     c.Archives == nil || *c.Archives,
		incomplete:   c.BlockIncomplete == nil || *c.BlockIncomplete,
		textBodies:   c.TextBodies,

		archiveDepth:   defaultArchiveDepth,
		archiveBytes:   defaultArchiveBytes,
		archiveEntries: defaultArchiveEntries,
		blockEncrypted: c.BlockEncrypted == nil || *c.BlockEncrypted,
		opaque:         buildSet(opaqueKinds, c.OpaqueArchives, nil, nil, strings.ToLower),

		code:        c.Code,
		stripNote:   defaultStripNote,
		stripHeader: defaultStripHeader,
		score:       c.Score,
	}
	if s.code == 0 {
		s.code = 554
	} else if err := postern.CheckReplyCode(actionReject, s.code); err != nil {
		return settings{}, fmt.Errorf("attachment-guard configuration: %w", err)
	}
	for k := range s.sniff {
		if !slices.Contains(allKinds, k) {
			return settings{}, fmt.Errorf("attachment-guard configuration: sniff: unknown kind %q (known: %s)",
				k, strings.Join(allKinds, ", "))
		}
	}
	for k := range s.opaque {
		if !slices.Contains(opaqueKinds, k) {
			return settings{}, fmt.Errorf("attachment-guard configuration: opaque_archives: unknown kind %q (known: %s)",
				k, strings.Join(opaqueKinds, ", "))
		}
	}
	if c.ArchiveDepth != nil {
		if s.archiveDepth = *c.ArchiveDepth; s.archiveDepth < 1 || s.archiveDepth > 64 {
			return settings{}, fmt.Errorf("attachment-guard configuration: archive_depth %d: want 1 to 64", s.archiveDepth)
		}
	}
	if c.ArchiveBytes != nil {
		if s.archiveBytes = *c.ArchiveBytes; s.archiveBytes < 64<<10 || s.archiveBytes > maxArchiveBytes {
			return settings{}, fmt.Errorf("attachment-guard configuration: archive_bytes %d: want %d to %d",
				s.archiveBytes, 64<<10, maxArchiveBytes)
		}
	}
	if c.ArchiveEntries != nil {
		if s.archiveEntries = *c.ArchiveEntries; s.archiveEntries < 1 || s.archiveEntries > 10_000_000 {
			return settings{}, fmt.Errorf("attachment-guard configuration: archive_entries %d: want 1 to 10000000",
				s.archiveEntries)
		}
	}
	for t := range s.contentTypes {
		if !strings.Contains(t, "/") {
			return settings{}, fmt.Errorf("attachment-guard configuration: %q is not a type/subtype media type", t)
		}
	}
	if c.StripNote != nil {
		s.stripNote = *c.StripNote
	}
	if !utf8.ValidString(s.stripNote) {
		return settings{}, fmt.Errorf("attachment-guard configuration: strip_note is not UTF-8")
	}
	if n := longestExpandedLine(s.stripNote, map[string]int{"{files}": maxNoteFiles, "{count}": 5}); n > maxBannerLine {
		return settings{}, fmt.Errorf("attachment-guard configuration: strip_note: a line can reach %d bytes with "+
			"its placeholders filled, more than the %d a mail line may have; break it into lines", n, maxBannerLine)
	}
	if c.StripHeader != nil {
		s.stripHeader = *c.StripHeader
	}
	if s.stripHeader != "" {
		if err := validHeaderName(s.stripHeader); err != nil {
			return settings{}, fmt.Errorf("attachment-guard configuration: strip_header: %w", err)
		}
	}
	return s, nil
}

// maxBannerLine is the longest line the host splices into a body (RFC 5322 §2.1.1: 998 bytes), and
// maxNoteFiles the most bytes of file names put into the strip note.
const (
	maxBannerLine = 998
	maxNoteFiles  = 600
)

// longestExpandedLine returns the length of the longest line of tmpl once every placeholder is replaced by a
// value of its maximum length.
func longestExpandedLine(tmpl string, maxLen map[string]int) int {
	longest := 0
	for _, line := range strings.Split(tmpl, "\n") {
		n := len(line)
		for ph, m := range maxLen {
			n += strings.Count(line, ph) * (m - len(ph))
		}
		longest = max(longest, n)
	}
	return longest
}

// validHeaderName checks an RFC 5322 field name the way the host will (1-76 printable ASCII, no colon), so a
// bad name fails at load time.
func validHeaderName(name string) error {
	if len(name) < 1 || len(name) > 76 {
		return fmt.Errorf("%q: a header name has 1 to 76 characters", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return fmt.Errorf("%q: character %q not allowed in a header name", name, c)
		}
	}
	return nil
}
