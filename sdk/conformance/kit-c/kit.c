/*
 * kit-c: the ABI v1 conformance kit for the C SDK (sdk/c/postern.h, sdk/c/postern_json.h).
 *
 * It calls every host function on the fixed input and reports each observation as a tag, following the protocol in
 * sdk/conformance/README.md (check names, formats, order). It uses the SDK's helpers wherever the SDK has one, and
 * the raw imports for byte-exact reads and for arguments no helper can express (a NUL inside a value).
 */
#include <string.h>

#include "postern.h"
#include "postern_json.h"

POSTERN_ABI_VERSION;

/* ------------------------------------------------------------------------------------------------------------
 * Reporting.
 */

/* Big enough for every value of the fixed input; tag values are at most 1024 bytes anyway. */
static char scratch[16384];
static char value[2048];

/* bad counts tags the host refused; a kit whose own reporting fails must not pass silently. */
static int bad;

static void tag(const char *key, const char *v, size_t n) {
	if (postern_tag_add(key, (uint32_t)strlen(key), v, (uint32_t)n) != 0) {
		bad++;
		postern_error(key);
	}
}

static void tag_s(const char *key, const char *v) { tag(key, v, strlen(v)); }

static void tag_i(const char *key, int64_t v) {
	if (postern_tag_int(key, v) != 0) {
		bad++;
		postern_error(key);
	}
}

/* tag_str reports a buffer-filling result: the error code, or the first n bytes of buf as text. */
static void tag_str(const char *key, int32_t n, const char *buf, size_t cap) {
	if (n < 0)
		tag_i(key, n);
	else
		tag(key, buf, (size_t)n < cap ? (size_t)n : cap);
}

/* tag_hex reports the error code, or the first n bytes of buf in lower-case hex. */
static void tag_hex(const char *key, int32_t n, const unsigned char *buf) {
	static const char digits[] = "0123456789abcdef";
	size_t i;
	if (n < 0) {
		tag_i(key, n);
		return;
	}
	if ((size_t)n * 2 > sizeof value) {
		bad++;
		postern_error("hex value too long for the kit");
		return;
	}
	for (i = 0; i < (size_t)n; i++) {
		value[2 * i] = digits[buf[i] >> 4];
		value[2 * i + 1] = digits[buf[i] & 15];
	}
	tag(key, value, (size_t)n * 2);
}

/* min_window is how many bytes a window read of limit bytes at offset wrote, given the total it returned. */
static int32_t min_window(int32_t total, uint32_t offset, uint32_t limit) {
	if (total < 0)
		return total;
	if ((uint32_t)total <= offset)
		return 0;
	return (uint32_t)total - offset < limit ? (int32_t)((uint32_t)total - offset) : (int32_t)limit;
}

/* ------------------------------------------------------------------------------------------------------------
 * Initialisation: its observations are configuration state, reported by every hook.
 */

static int32_t init_config = -100, init_patterns = -100, init_pattern_invalid = -100;
static int32_t handle = -1;

/* parse_config reads and parses the configuration into doc/root. Returns 0, a host code, or -2 for bad JSON. */
static int32_t parse_config(char *doc, size_t cap, postern_json *root, int32_t *total) {
	postern_json_error err;
	int32_t n = postern_config_get(doc, (uint32_t)cap);
	*total = n;
	if (n < 0)
		return n;
	if ((size_t)n > cap)
		return POSTERN_ERR_INVALID;
	if (postern_json_parse(doc, (size_t)n, root, &err) < 0) {
		char msg[128];
		postern_error(postern_json_error_text(&err, msg, sizeof msg));
		return POSTERN_ERR_INVALID;
	}
	return 0;
}

POSTERN_INIT() {
	static char doc[4096];
	postern_json root;
	int32_t total;
	init_config = parse_config(doc, sizeof doc, &root, &total);
	handle = postern_patterns("swordfish\n(?i)swordfish\nK[öo]ln");
	init_patterns = handle >= 0 ? 0 : handle;
	init_pattern_invalid = postern_patterns("a(b");
	return 0;
}

static void tag_status(const char *key, int32_t v) {
	if (v == 0)
		tag_s(key, "ok");
	else
		tag_i(key, v);
}

/* ------------------------------------------------------------------------------------------------------------
 * Checks common to every hook.
 */

/* tag_multi reports a multi-valued field joined by ',' and its count under key + ".count" when count_key. */
static void tag_multi(const char *key, const char *field, const char *count_key) {
	size_t w = 0;
	uint32_t i;
	int32_t n = 0;
	for (i = 0; i < 1000; i++) {
		n = postern_field(field, i, scratch, sizeof scratch);
		if (n < 0)
			break;
		if (i > 0 && w < sizeof value)
			value[w++] = ',';
		if ((size_t)n > sizeof value - w) {
			bad++;
			postern_error("multi-valued field too long for the kit");
			return;
		}
		memcpy(value + w, scratch, (size_t)n);
		w += (size_t)n;
	}
	if (i == 0 && n != POSTERN_ERR_NOT_FOUND) {
		/* unavailable (or another error): both checks report the code */
		tag_i(key, n);
		if (count_key)
			tag_i(count_key, n);
		return;
	}
	tag(key, value, w);
	if (count_key)
		tag_i(count_key, i);
}

static void common(void) {
	static const char *const fields[] = {
		"hook",	      "protocol",    "direction", "listener",  "client.ip",    "client.port",  "client.helo",
		"tls.version", "tls.cipher", "upstream.tls.version", "upstream.tls.cipher", "auth.user", "mail_from", "smtputf8",
		"rcpt.current", "message.size", "mailbox.user", "mailbox.name", "message.uid", "message.uidvalidity",
		"message.uidl", "message.internal_date", "command", "message.limit_exceeded",
	};
	static char doc[4096];
	char key[64];
	postern_json root;
	int32_t total, r;
	size_t i;

	tag_status("init.config", init_config);
	tag_status("init.patterns", init_patterns);
	tag_i("init.pattern_invalid", init_pattern_invalid);

	r = parse_config(doc, sizeof doc, &root, &total);
	if (r < 0) {
		tag_i("config.greeting", r);
	} else {
		r = postern_json_string(postern_json_get(root, "greeting"), scratch, sizeof scratch);
		tag_str("config.greeting", r < 0 ? POSTERN_ERR_NOT_FOUND : r, scratch, sizeof scratch);
	}
	tag_i("config.len", total);

	for (i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		memcpy(key, "field.", 6);
		strcpy(key + 6, fields[i]);
		r = postern_field(fields[i], 0, scratch, sizeof scratch);
		tag_str(key, r, scratch, sizeof scratch);
	}
	tag_multi("field.rcpt", "rcpt", "field.rcpt.count");
	tag_multi("field.message.malformed", "message.malformed", NULL);
	tag_multi("field.message.ambiguous", "message.ambiguous", NULL);
	tag_multi("field.message.flags", "message.flags", NULL);
	tag_i("field.unknown", postern_field("no.such.field", 0, scratch, sizeof scratch));
	tag_i("field.past_end", postern_field("protocol", 1, scratch, sizeof scratch));
}

/* envelope runs the checks of the connect, mail_from and rcpt_to hooks. */
static void envelope(const char *rcpt) {
	unsigned char sum[32];
	common();
	tag_i("unavail.header_get", postern_header(0, "Subject", 0, 0, scratch, sizeof scratch));
	tag_i("unavail.header_all", postern_header_all(0, scratch, sizeof scratch));
	tag_i("unavail.part_count", postern_part_count());
	tag_i("unavail.part_field", postern_part_attr(0, "size", scratch, sizeof scratch));
	tag_i("unavail.part_read", postern_part_read(0, POSTERN_MODE_RAW, 0, scratch, 16));
	tag_i("unavail.message_read", postern_message_read(0, scratch, 16));
	tag_i("unavail.part_match", postern_part_match(0, POSTERN_MODE_RAW, handle, 0, scratch, sizeof scratch));
	tag_i("unavail.part_sha256", postern_part_sha256(0, POSTERN_MODE_RAW, sum));
	tag_i("unavail.header_add", postern_add_header("X-Kit", "1"));
	tag_i("unavail.header_set", postern_set_header("X-Kit", "1"));
	tag_i("unavail.header_remove", postern_remove_header("X-Kit"));
	tag_i("unavail.subject_prefix", postern_prefix_subject("[x] "));
	tag_i("unavail.banner_add", postern_add_banner("x", ""));
	tag_i("unavail.part_remove", postern_part_remove(1));
	tag_i("unavail.part_replace", postern_replace_part(2, "text/plain", "x", 1));
	tag_i("change.rcpt_add", postern_add_rcpt(rcpt));
}

POSTERN_ON_CONNECT() {
	bad = 0;
	envelope("dave@example.net");
	return bad;
}

POSTERN_ON_MAIL_FROM() {
	bad = 0;
	envelope("dave@example.net");
	tag_i("verdict.tempfail", postern_tempfail(0, "", "greylisted"));
	return bad;
}

POSTERN_ON_RCPT_TO() {
	bad = 0;
	envelope("erin@example.net");
	tag_i("verdict.reject", postern_reject(0, "5.1.1", "no such user"));
	tag_i("score.add", postern_score(0.5));
	return bad;
}

/* ------------------------------------------------------------------------------------------------------------
 * The message hook.
 */

/* read_all reads a part's whole content in mode into scratch and returns the total (or an error code). */
static int32_t read_all(int32_t part, uint32_t mode) {
	int32_t n = postern_part_read(part, mode, 0, scratch, sizeof scratch);
	if (n > (int32_t)sizeof scratch) {
		bad++;
		postern_error("part too long for the kit");
		return POSTERN_ERR_INVALID;
	}
	return n;
}

/* Match is one line of part_match's result. */
struct match {
	uint32_t pattern, start, end;
};

/* parse_u reads a decimal number at *p and advances past it and one following separator. */
static uint32_t parse_u(const char **p, const char *end) {
	uint32_t v = 0;
	while (*p < end && **p >= '0' && **p <= '9')
		v = v * 10 + (uint32_t)(*(*p)++ - '0');
	if (*p < end)
		(*p)++;
	return v;
}

/* matches runs part_match and reports it formatted under key (if not NULL) and counted under count_key (if not
 * NULL). It returns the number of matches (or the error code) and fills first with the first one. */
static int32_t matches(int32_t part, uint32_t mode, int32_t h, uint32_t max, const char *key, const char *count_key,
		       struct match *first) {
	int32_t n = postern_part_match(part, mode, h, max, scratch, sizeof scratch);
	const char *p = scratch, *end;
	size_t w = 0;
	int32_t count = 0;
	if (n < 0) {
		if (key)
			tag_i(key, n);
		if (count_key)
			tag_i(count_key, n);
		return n;
	}
	if (n > (int32_t)sizeof scratch) {
		bad++;
		postern_error("match list too long for the kit");
		return POSTERN_ERR_INVALID;
	}
	end = scratch + n;
	while (p < end) {
		struct match m;
		char num[48];
		char *q = num + sizeof num;
		uint32_t vals[3];
		int k;
		m.pattern = parse_u(&p, end);
		m.start = parse_u(&p, end);
		m.end = parse_u(&p, end);
		if (count == 0 && first)
			*first = m;
		count++;
		/* Format "pattern:start-end" backwards into num. */
		vals[0] = m.pattern;
		vals[1] = m.start;
		vals[2] = m.end;
		for (k = 2; k >= 0; k--) {
			uint32_t v = vals[k];
			do {
				*--q = (char)('0' + v % 10);
				v /= 10;
			} while (v);
			if (k > 0)
				*--q = k == 2 ? '-' : ':';
		}
		if (w > 0 && w < sizeof value)
			value[w++] = ' ';
		if ((size_t)(num + sizeof num - q) > sizeof value - w) {
			bad++;
			postern_error("match list too long for the kit");
			return POSTERN_ERR_INVALID;
		}
		memcpy(value + w, q, (size_t)(num + sizeof num - q));
		w += (size_t)(num + sizeof num - q);
	}
	if (key)
		tag(key, value, w);
	if (count_key)
		tag_i(count_key, count);
	return count;
}

static void message_reads(void) {
	static const char *const attrs[] = {"parent",	"depth",    "content_type", "charset", "encoding",
					    "disposition", "filename", "size",	       "multipart", "defects"};
	unsigned char sum[32];
	char key[64];
	int32_t n, i, count;
	size_t a;
	struct match first = {0, 0, 0};

	/* Headers. */
	n = postern_header(0, "Subject", 0, 0, scratch, sizeof scratch);
	tag_str("header.subject", n, scratch, sizeof scratch);
	n = postern_header(0, "Subject", 0, POSTERN_HEADER_DECODED, scratch, sizeof scratch);
	tag_str("header.subject.decoded", n, scratch, sizeof scratch);
	n = postern_header(0, "sUBJECT", 0, POSTERN_HEADER_DECODED, scratch, sizeof scratch);
	tag_str("header.subject.case", n, scratch, sizeof scratch);
	n = postern_header(0, "From", 0, POSTERN_HEADER_DECODED, scratch, sizeof scratch);
	tag_str("header.from.decoded", n, scratch, sizeof scratch);
	for (i = 0; i < 3; i++) {
		strcpy(key, "header.x-multi.0");
		key[15] = (char)('0' + i);
		n = postern_header(0, "X-Multi", (uint32_t)i, 0, scratch, sizeof scratch);
		tag_str(key, n, scratch, sizeof scratch);
	}
	tag_i("header.x-multi.count", postern_header_count(0, "X-Multi", 100));
	n = postern_header(0, "X-Folded", 0, 0, scratch, sizeof scratch);
	tag_str("header.x-folded", n, scratch, sizeof scratch);
	n = postern_header(0, "X-Eight-Bit", 0, 0, scratch, sizeof scratch);
	tag_hex("header.x-eight-bit.hex", n, (unsigned char *)scratch);
	tag_i("header.missing", postern_header(0, "X-Nope", 0, 0, scratch, sizeof scratch));
	tag_i("header.bad_name", postern_header(0, "X:Bad", 0, 0, scratch, sizeof scratch));
	tag_i("header.bad_part", postern_header(99, "Subject", 0, 0, scratch, sizeof scratch));
	n = postern_header(2, "Content-Type", 0, 0, scratch, sizeof scratch);
	tag_str("header.2.content-type", n, scratch, sizeof scratch);
	tag_i("header_all.0.len", postern_header_all(0, scratch, sizeof scratch));
	n = postern_header_all(2, scratch, sizeof scratch);
	tag_hex("header_all.2.hex", n, (unsigned char *)scratch);
	tag_i("header_all.bad_part", postern_header_all(99, scratch, sizeof scratch));

	/* Parts. */
	count = postern_part_count();
	tag_i("part.count", count);
	for (i = 0; i < 6; i++) {
		for (a = 0; a < sizeof attrs / sizeof attrs[0]; a++) {
			strcpy(key, "part.0.");
			key[5] = (char)('0' + i);
			strcpy(key + 7, attrs[a]);
			n = postern_part_attr(i, attrs[a], scratch, sizeof scratch);
			tag_str(key, n, scratch, sizeof scratch);
		}
	}
	tag_i("part_field.unknown", postern_part_attr(0, "no_such_attr", scratch, sizeof scratch));
	tag_i("part_field.bad_part", postern_part_attr(99, "size", scratch, sizeof scratch));
	tag_i("part_field.negative", postern_part_attr(-1, "size", scratch, sizeof scratch));

	/* Part content. */
	tag_i("part_read.2.raw.len", postern_part_read(2, POSTERN_MODE_RAW, 0, scratch, 0));
	tag_i("part_read.2.decoded.len", postern_part_read(2, POSTERN_MODE_DECODED, 0, scratch, 0));
	tag_i("part_read.2.text.len", postern_part_read(2, POSTERN_MODE_TEXT, 0, scratch, 0));
	tag_hex("part_read.2.decoded.hex", read_all(2, POSTERN_MODE_DECODED), (unsigned char *)scratch);
	tag_hex("part_read.2.text.hex", read_all(2, POSTERN_MODE_TEXT), (unsigned char *)scratch);
	n = postern_part_read(2, POSTERN_MODE_TEXT, 6, scratch, 5);
	tag_hex("part_read.2.text.window", min_window(n, 6, 5), (unsigned char *)scratch);
	tag_i("part_read.2.text.window.total", n);
	tag_i("part_read.2.text.past_end", postern_part_read(2, POSTERN_MODE_TEXT, 1000, scratch, 16));
	tag_i("part_read.4.raw.len", postern_part_read(4, POSTERN_MODE_RAW, 0, scratch, 0));
	tag_i("part_read.4.decoded.len", postern_part_read(4, POSTERN_MODE_DECODED, 0, scratch, 0));
	n = postern_part_read(4, POSTERN_MODE_DECODED, 0, scratch, 8);
	tag_hex("part_read.4.decoded.head", min_window(n, 0, 8), (unsigned char *)scratch);
	n = postern_part_read(0, POSTERN_MODE_RAW, 0, scratch, 16);
	tag_i("part_read.0.raw.len", n);
	tag_hex("part_read.0.raw.head", min_window(n, 0, 16), (unsigned char *)scratch);
	tag_i("part_read.1.decoded", postern_part_read(1, POSTERN_MODE_DECODED, 0, scratch, 16));
	tag_i("part_read.bad_mode", postern_part_read(2, 7, 0, scratch, 16));
	tag_i("part_read.bad_part", postern_part_read(99, POSTERN_MODE_RAW, 0, scratch, 16));
	tag_i("part_read.5.text", postern_part_read(5, POSTERN_MODE_TEXT, 0, scratch, 16));
	tag_hex("part_read.5.decoded.hex", read_all(5, POSTERN_MODE_DECODED), (unsigned char *)scratch);

	/* Part 3 as a stream of 16-byte windows, assembled after scratch's first half. */
	{
		static unsigned char whole[4096];
		uint32_t off = 0;
		int32_t total = 0;
		for (;;) {
			total = postern_part_read(3, POSTERN_MODE_TEXT, off, scratch, 16);
			if (total < 0 || off >= (uint32_t)total || off + 16 > sizeof whole)
				break;
			n = min_window(total, off, 16);
			memcpy(whole + off, scratch, (size_t)n);
			off += (uint32_t)n;
		}
		tag_hex("stream.3.text", total < 0 ? total : (int32_t)off, whole);
	}
	n = read_all(3, POSTERN_MODE_TEXT);
	tag_str("text.3", n, scratch, sizeof scratch);

	/* The whole message. */
	n = postern_message_read(0, scratch, 16);
	tag_i("message_read.len", n);
	tag_hex("message_read.head", min_window(n, 0, 16), (unsigned char *)scratch);
	n = postern_message_read(100, scratch, 16);
	tag_hex("message_read.window", min_window(n, 100, 16), (unsigned char *)scratch);
	tag_i("message_read.past_end", postern_message_read(1000000, scratch, 16));

	/* Host-side helpers. */
	matches(2, POSTERN_MODE_TEXT, handle, 0, "match.2.text", "match.2.text.count", &first);
	matches(2, POSTERN_MODE_TEXT, handle, 2, "match.2.text.max2", NULL, NULL);
	n = postern_part_read(2, POSTERN_MODE_TEXT, first.start, scratch, first.end - first.start);
	tag_str("match.2.text.first", min_window(n, first.start, first.end - first.start), scratch, sizeof scratch);
	matches(3, POSTERN_MODE_TEXT, handle, 0, "match.3.text", NULL, NULL);
	matches(0, POSTERN_MODE_RAW, handle, 0, NULL, "match.0.raw.count", NULL);
	matches(1, POSTERN_MODE_DECODED, handle, 0, "match.1.decoded", NULL, NULL);
	matches(2, POSTERN_MODE_TEXT, 9999, 0, "match.bad_handle", NULL, NULL);
	matches(5, POSTERN_MODE_TEXT, handle, 0, "match.5.text", NULL, NULL);
	tag_hex("sha256.4.decoded", postern_part_sha256(4, POSTERN_MODE_DECODED, sum), sum);
	tag_hex("sha256.2.text", postern_part_sha256(2, POSTERN_MODE_TEXT, sum), sum);
	tag_hex("sha256.0.raw", postern_part_sha256(0, POSTERN_MODE_RAW, sum), sum);
	tag_i("sha256.1.decoded", postern_part_sha256(1, POSTERN_MODE_DECODED, sum));
	tag_i("sha256.5.text", postern_part_sha256(5, POSTERN_MODE_TEXT, sum));
}

static void message_decisions(void) {
	static char long_text[514], long_key[66], long_value[1026];
	memset(long_text, 'x', 513);
	memset(long_key, 'k', 65);
	memset(long_value, 'x', 1025);

	tag_i("verdict.reject.bad_code", postern_reject(250, "", "x"));
	tag_i("verdict.reject.bad_enh", postern_reject(550, "4.7.1", "x"));
	tag_i("verdict.tempfail.crlf", postern_tempfail(0, "", "bad\r\ntext"));
	tag_i("verdict.text.long", postern_reject(0, "", long_text));
	tag_i("verdict.reject", postern_reject(554, "5.7.0", "rejected by kit"));
	tag_i("verdict.discard", postern_discard());
	tag_i("verdict.accept", postern_accept());
	tag_i("verdict.quarantine", postern_quarantine("conformance kit"));

	tag_i("tag.bad_key", postern_tag("bad key!", "v"));
	tag_i("tag.long_key", postern_tag(long_key, "v"));
	tag_i("tag.long_value", postern_tag("long.value", long_value));
	tag_s("tag.replaced", "first");
	tag_s("tag.replaced", "second");

	postern_score(1.5);
	tag_i("score.add", postern_score(-0.25));
	tag_i("score.nan", postern_score(__builtin_nan("")));
	tag_i("score.inf", postern_score(__builtin_inf()));

	postern_logs(POSTERN_LOG_DEBUG, "kit debug");
	postern_logs(POSTERN_LOG_INFO, "kit info");
	postern_logs(POSTERN_LOG_WARN, "kit warn");
	postern_logs(POSTERN_LOG_ERROR, "kit error");
	postern_logs(9, "kit clamped");
}

static void message_changes(void) {
	tag_i("change.header_add", postern_add_header("X-Conformance", "kit"));
	tag_i("change.header_set", postern_set_header("X-Multi", "replaced"));
	tag_i("change.header_remove", postern_remove_header("X-Folded"));
	tag_i("change.subject_prefix", postern_prefix_subject("[kit] "));
	tag_i("change.banner_add", postern_add_banner("Scanned by Postern.", "<p>Scanned by Postern.</p>"));
	tag_i("change.part_replace", postern_replace_part(4, "text/plain", "replaced by the conformance kit", 31));
	tag_i("change.part_remove", postern_part_remove(5));
	tag_i("change.rcpt_add", postern_add_rcpt("carol@example.net"));
	tag_i("change.header_add.crlf", postern_add_header("X-Evil", "a\r\nBcc: x@example.net"));
	tag_i("change.header_add.bad_name", postern_add_header("X:Bad", "v"));
	/* A NUL inside a value: only the raw import can say it. */
	tag_i("change.header_set.nul", postern_header_set(POSTERN_LIT("X-Nul"), "a\0b", 3));
	tag_i("change.part_remove.root", postern_part_remove(0));
	tag_i("change.part_remove.bad_part", postern_part_remove(99));
	tag_i("change.part_replace.multipart", postern_replace_part(1, "text/plain", "x", 1));
	tag_i("change.rcpt_add.bad", postern_add_rcpt("<bad@example.net>"));
}

POSTERN_ON_MESSAGE() {
	bad = 0;
	common();
	message_reads();
	message_decisions();
	message_changes();
	return bad;
}
