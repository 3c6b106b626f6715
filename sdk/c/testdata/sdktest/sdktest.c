/*
 * sdktest: a test harness for postern.h and postern_json.h, driven by sdk/c/sdk_test.go under a fake host.
 *
 * The Go test writes inputs into in[], calls one t_* export, and reads the results from the return value and from
 * out[] (which the harness fills with 'X' first, so the test can see exactly which bytes a helper wrote).
 */
#include <stdio.h>
#include <string.h>

#include "postern.h"
#include "postern_json.h"

POSTERN_ABI_VERSION;

static char in[65536];
static char out[4096];

POSTERN_EXPORT("in_ptr") char *in_ptr(void) { return in; }
POSTERN_EXPORT("out_ptr") char *out_ptr(void) { return out; }

static void clear(void) { memset(out, 'X', sizeof out); }

/* A hook, so that the module is a well-formed plugin too. */
POSTERN_ON_MESSAGE() { return 0; }
POSTERN_WANTS() { return POSTERN_WANT_FILES; }

/* --- postern.h helpers --------------------------------------------------------------------------------------- */

POSTERN_EXPORT("t_config") int32_t t_config(uint32_t cap) {
	clear();
	return postern_config(out, cap);
}

/* in holds the field name (NUL-terminated). */
POSTERN_EXPORT("t_field") int32_t t_field(uint32_t index, uint32_t cap) {
	clear();
	return postern_field(in, index, out, cap);
}

POSTERN_EXPORT("t_header") int32_t t_header(int32_t part, uint32_t index, uint32_t flags, uint32_t cap) {
	clear();
	return postern_header(part, in, index, flags, out, cap);
}

POSTERN_EXPORT("t_header_count") int32_t t_header_count(uint32_t max) { return postern_header_count(0, in, max); }

POSTERN_EXPORT("t_part_attr") int32_t t_part_attr(int32_t part, uint32_t cap) {
	clear();
	return postern_part_attr(part, in, out, cap);
}

/* t_part_filename returns postern_part_filename's result; the name is left in out. */
POSTERN_EXPORT("t_part_filename") int32_t t_part_filename(int32_t part, uint32_t index, uint32_t cap) {
	clear();
	return postern_part_filename(part, index, out, cap);
}

/* t_part_attr_int returns the helper's result and leaves the parsed value as decimal text in out. */
POSTERN_EXPORT("t_part_attr_int") int32_t t_part_attr_int(int32_t part) {
	int64_t v = 7777;
	int32_t r;
	clear();
	r = postern_part_attr_int(part, in, &v);
	snprintf(out, sizeof out, "%lld", (long long)v);
	return r;
}

POSTERN_EXPORT("t_tag_int") int32_t t_tag_int(int64_t v) { return postern_tag_int("n", v); }

POSTERN_EXPORT("t_lit") int32_t t_lit(void) {
	return postern_header_get(0, POSTERN_LIT("Subject"), 0, POSTERN_HEADER_DECODED, 0, 0);
}

/* t_calls makes one call of every string helper, with NULL where NULL is allowed, in a fixed order. */
POSTERN_EXPORT("t_calls") int32_t t_calls(void) {
	int32_t bad = 0;
	bad |= postern_tag("k", "v");
	bad |= postern_tag("empty", NULL);
	bad |= postern_score(1.5);
	bad |= postern_info("hello");
	bad |= postern_logs(POSTERN_LOG_WARN, NULL);
	bad |= postern_debug("d");
	bad |= postern_warn("w");
	bad |= postern_error("e");
	bad |= postern_accept();
	bad |= postern_reject(0, NULL, NULL);
	bad |= postern_reject(554, "5.7.0", "no");
	bad |= postern_tempfail(0, "", "later");
	bad |= postern_discard();
	bad |= postern_quarantine("held");
	bad |= postern_add_header("X-A", "1");
	bad |= postern_set_header("X-B", NULL);
	bad |= postern_remove_header("X-C");
	bad |= postern_prefix_subject("[P] ");
	bad |= postern_add_banner("text", NULL);
	bad |= postern_replace_part(2, "text/plain", "abc", 3);
	bad |= postern_add_rcpt("a@b.example");
	bad |= postern_part_remove(3) < 0 ? 1 : 0;
	bad |= postern_patterns("a\nb") < 0 ? 1 : 0;
	return bad;
}

/* --- postern_json.h ------------------------------------------------------------------------------------------ */

static postern_json root;
static postern_json_error jerr;

/* t_json_parse parses in[0:len]. On failure out holds the error text. */
POSTERN_EXPORT("t_json_parse") int32_t t_json_parse(uint32_t len) {
	clear();
	if (postern_json_parse(in, len, &root, &jerr) < 0) {
		postern_json_error_text(&jerr, out, sizeof out);
		return -1;
	}
	return root.type;
}

/* t_json_error_text formats the last error into a buffer of cap bytes (at out). */
POSTERN_EXPORT("t_json_error_text") void t_json_error_text(uint32_t cap) {
	clear();
	postern_json_error_text(&jerr, out, cap);
}

/*
 * t_json_query walks the last parsed document along the path in[qoff:] ('/'-separated; a segment made of digits
 * indexes an array, "#len" yields the length, anything else names a member) and returns the value's type (0 when
 * absent). out gets a rendering: s:<decoded text> for strings (cut to cap bytes by postern_json_string),
 * i:<integer> or d:<%.17g> for numbers, b:<0|1>, null, len:<n>, or the raw text of arrays and objects.
 */
POSTERN_EXPORT("t_json_query") int32_t t_json_query(uint32_t qoff, uint32_t cap) {
	postern_json v = root;
	const char *q = in + qoff;
	char seg[256];
	clear();
	while (*q) {
		size_t n = strcspn(q, "/");
		int digits = n > 0;
		size_t k;
		if (n >= sizeof seg)
			return -1;
		memcpy(seg, q, n);
		seg[n] = 0;
		for (k = 0; k < n; k++)
			if (seg[k] < '0' || seg[k] > '9')
				digits = 0;
		if (strcmp(seg, "#len") == 0) {
			snprintf(out, sizeof out, "len:%u", (unsigned)postern_json_len(v));
			return v.type;
		}
		v = digits && v.type == POSTERN_JSON_ARRAY ? postern_json_at(v, (uint32_t)atoi(seg)) : postern_json_get(v, seg);
		q += n;
		if (*q == '/')
			q++;
	}
	switch (v.type) {
	case POSTERN_JSON_STRING: {
		int32_t r;
		out[0] = 's';
		out[1] = ':';
		r = postern_json_string(v, out + 2, cap);
		if (cap == 0)
			out[2] = 0;
		return r < 0 ? -1 : v.type;
	}
	case POSTERN_JSON_NUMBER: {
		int64_t i;
		double d;
		if (postern_json_int(v, &i) == 0)
			snprintf(out, sizeof out, "i:%lld", (long long)i);
		else if (postern_json_number(v, &d) == 0)
			snprintf(out, sizeof out, "d:%.17g", d);
		else
			snprintf(out, sizeof out, "bad-number");
		return v.type;
	}
	case POSTERN_JSON_TRUE:
	case POSTERN_JSON_FALSE: {
		int b = -1;
		postern_json_bool(v, &b);
		snprintf(out, sizeof out, "b:%d", b);
		return v.type;
	}
	case POSTERN_JSON_NULL:
		snprintf(out, sizeof out, "null");
		return v.type;
	case POSTERN_JSON_ARRAY:
	case POSTERN_JSON_OBJECT:
		snprintf(out, sizeof out, "%.*s", (int)v.n, v.p);
		return v.type;
	default:
		out[0] = 0;
		return 0;
	}
}

/* t_json_eq compares the string at path in[qoff:] (one member name) with in[soff:]. */
POSTERN_EXPORT("t_json_eq") int32_t t_json_eq(uint32_t qoff, uint32_t soff) {
	return postern_json_eq(postern_json_get(root, in + qoff), in + soff);
}

/* t_json_misuse checks that accessors refuse values of the wrong type rather than reading them. */
POSTERN_EXPORT("t_json_misuse") int32_t t_json_misuse(void) {
	postern_json none = {in, 0, POSTERN_JSON_NONE}, v;
	char buf[8];
	double d;
	int64_t i;
	int b;
	uint32_t pos = 0;
	int32_t fails = 0;
	fails += postern_json_string(none, buf, sizeof buf) == -1;
	fails += postern_json_number(none, &d) == -1;
	fails += postern_json_int(none, &i) == -1;
	fails += postern_json_bool(none, &b) == -1;
	fails += postern_json_next(none, &pos, NULL, &v) == 0;
	fails += postern_json_get(none, "a").type == POSTERN_JSON_NONE;
	fails += postern_json_at(none, 0).type == POSTERN_JSON_NONE;
	fails += postern_json_len(none) == 0;
	fails += postern_json_eq(none, "") == 0;
	return fails; /* 9 when every accessor refused */
}
