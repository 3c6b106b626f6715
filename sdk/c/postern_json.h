/*
 * postern_json.h: a small, bounded JSON reader for plugin configuration (config_get hands plugins JSON).
 *
 *     static char doc[4096];
 *     postern_json root, v;
 *     postern_json_error err;
 *     int32_t n = postern_config_get(doc, sizeof doc);          // bound the document: check n <= sizeof doc
 *     if (postern_json_parse(doc, (size_t)n, &root, &err) < 0) ... // err.msg, err.offset
 *     v = postern_json_get(root, "greeting");                    // POSTERN_JSON_NONE when absent
 *     postern_json_string(v, buf, sizeof buf);
 *
 * postern_json_parse validates the whole document once (RFC 8259 grammar, UTF-8, nesting at most
 * POSTERN_JSON_MAX_DEPTH) without recursion or allocation. A postern_json is a view of one value inside that
 * document; the accessors below work only on views it produced, walk the text on demand and never read outside the
 * value. Objects keep their members in document order; postern_json_get returns the first member of that name.
 *
 * It does not depend on postern.h, so it compiles for any target.
 */
#ifndef POSTERN_JSON_H
#define POSTERN_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* POSTERN_JSON_MAX_DEPTH bounds nesting; deeper documents are refused by postern_json_parse. */
#define POSTERN_JSON_MAX_DEPTH 64

enum postern_json_type {
	POSTERN_JSON_NONE = 0, /* no value: a missing member, an index past the end */
	POSTERN_JSON_NULL,
	POSTERN_JSON_FALSE,
	POSTERN_JSON_TRUE,
	POSTERN_JSON_NUMBER,
	POSTERN_JSON_STRING,
	POSTERN_JSON_ARRAY,
	POSTERN_JSON_OBJECT,
};

/* postern_json is one value of a parsed document: its text and its type. */
typedef struct {
	const char *p;
	uint32_t n;
	int type; /* enum postern_json_type */
} postern_json;

/* postern_json_error says what was wrong with a document and where (a byte offset). */
typedef struct {
	const char *msg;
	uint32_t offset;
} postern_json_error;

/* --- internals ------------------------------------------------------------------------------------------------ */

static inline size_t postern__json_ws(const char *s, size_t n, size_t i) {
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

static inline int postern__json_hex(int c) {
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* postern__json_utf8 returns the length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF), or 0. */
static inline size_t postern__json_utf8(const unsigned char *s, size_t n, size_t i) {
	unsigned c = s[i];
	size_t len, k;
	unsigned lo = 0x80, hi = 0xBF;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0;
		if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90;
		if (c == 0xF4)
			hi = 0x8F;
	} else
		return 0;
	if (n - i < len)
		return 0;
	for (k = 1; k < len; k++) {
		unsigned b = s[i + k];
		if (b < lo || b > hi)
			return 0;
		lo = 0x80;
		hi = 0xBF;
	}
	return len;
}

/* postern__json_scan_string checks the string starting at s[i] ('"') and returns the offset after its closing
 * quote, or 0 with *msg set (0 is never a valid end: a string is at least 2 bytes). */
static inline size_t postern__json_scan_string(const char *s, size_t n, size_t i, size_t *at, const char **msg) {
	i++;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"')
			return i + 1;
		if (c < 0x20) {
			*at = i;
			*msg = "control character in string";
			return 0;
		}
		if (c == '\\') {
			int k;
			if (i + 1 >= n)
				break;
			switch (s[i + 1]) {
			case '"':
			case '\\':
			case '/':
			case 'b':
			case 'f':
			case 'n':
			case 'r':
			case 't':
				i += 2;
				continue;
			case 'u':
				for (k = 0; k < 4; k++) {
					if (i + 2 + (size_t)k >= n || postern__json_hex(s[i + 2 + k]) < 0) {
						*at = i;
						*msg = "bad \\u escape";
						return 0;
					}
				}
				i += 6;
				continue;
			default:
				*at = i;
				*msg = "bad escape";
				return 0;
			}
		}
		if (c >= 0x80) {
			size_t l = postern__json_utf8((const unsigned char *)s, n, i);
			if (l == 0) {
				*at = i;
				*msg = "invalid UTF-8";
				return 0;
			}
			i += l;
			continue;
		}
		i++;
	}
	*at = n;
	*msg = "unterminated string";
	return 0;
}

static inline int postern__json_digit(const char *s, size_t n, size_t i) { return i < n && s[i] >= '0' && s[i] <= '9'; }

/* postern__json_scan_number checks the number at s[i] and returns the offset after it, or 0 with *msg set. */
static inline size_t postern__json_scan_number(const char *s, size_t n, size_t i, size_t *at, const char **msg) {
	if (i < n && s[i] == '-')
		i++;
	if (postern__json_digit(s, n, i) && s[i] == '0')
		i++;
	else if (postern__json_digit(s, n, i))
		while (postern__json_digit(s, n, i))
			i++;
	else
		goto bad;
	if (i < n && s[i] == '.') {
		i++;
		if (!postern__json_digit(s, n, i))
			goto bad;
		while (postern__json_digit(s, n, i))
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (!postern__json_digit(s, n, i))
			goto bad;
		while (postern__json_digit(s, n, i))
			i++;
	}
	return i;
bad:
	*at = i;
	*msg = "bad number";
	return 0;
}

/* postern__json_end returns the offset just after the (valid) value starting at s[i], without going past n. */
static inline size_t postern__json_end(const char *s, size_t n, size_t i) {
	size_t depth = 0;
	if (i >= n)
		return n;
	if (s[i] != '"' && s[i] != '{' && s[i] != '[') {
		while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' &&
		       s[i] != '\n' && s[i] != '\r')
			i++;
		return i;
	}
	for (; i < n; i++) {
		char c = s[i];
		if (c == '"') {
			for (i++; i < n && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
			if (depth == 0)
				return i < n ? i + 1 : n;
		} else if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			if (--depth == 0)
				return i + 1;
		}
	}
	return n;
}

static inline postern_json postern__json_value(const char *s, size_t n, size_t i) {
	postern_json v = {s + i, 0, POSTERN_JSON_NONE};
	if (i >= n)
		return v;
	v.n = (uint32_t)(postern__json_end(s, n, i) - i);
	switch (s[i]) {
	case '{':
		v.type = POSTERN_JSON_OBJECT;
		break;
	case '[':
		v.type = POSTERN_JSON_ARRAY;
		break;
	case '"':
		v.type = POSTERN_JSON_STRING;
		break;
	case 't':
		v.type = POSTERN_JSON_TRUE;
		break;
	case 'f':
		v.type = POSTERN_JSON_FALSE;
		break;
	case 'n':
		v.type = POSTERN_JSON_NULL;
		break;
	default:
		v.type = POSTERN_JSON_NUMBER;
	}
	return v;
}

/* --- API ------------------------------------------------------------------------------------------------------ */

/* postern_json_parse validates doc[0:len] as one JSON value and sets *root to it. Returns 0, or -1 with *err
 * (a static message and the byte offset of the problem). */
static inline int postern_json_parse(const char *doc, size_t len, postern_json *root, postern_json_error *err) {
	char stack[POSTERN_JSON_MAX_DEPTH]; /* '{' or '[' per open container */
	size_t depth = 0, i, at = 0, e;
	const char *msg = NULL;
	enum { VALUE, KEY, AFTER } state = VALUE;
	i = postern__json_ws(doc, len, 0);
	for (;;) {
		if (state == VALUE) {
			if (i >= len) {
				at = i;
				msg = "unexpected end of document";
				goto fail;
			}
			switch (doc[i]) {
			case '{':
			case '[':
				if (depth == POSTERN_JSON_MAX_DEPTH) {
					at = i;
					msg = "nested too deeply";
					goto fail;
				}
				stack[depth++] = doc[i];
				i = postern__json_ws(doc, len, i + 1);
				if (i < len && doc[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
					depth--;
					i++;
					state = AFTER;
				} else {
					state = stack[depth - 1] == '{' ? KEY : VALUE;
				}
				continue;
			case '"':
				if ((e = postern__json_scan_string(doc, len, i, &at, &msg)) == 0)
					goto fail;
				i = e;
				break;
			case 't':
			case 'f':
			case 'n': {
				const char *lit = doc[i] == 't' ? "true" : doc[i] == 'f' ? "false" : "null";
				size_t l = strlen(lit);
				if (len - i < l || memcmp(doc + i, lit, l) != 0) {
					at = i;
					msg = "unexpected word";
					goto fail;
				}
				i += l;
				break;
			}
			default:
				if (doc[i] != '-' && !postern__json_digit(doc, len, i)) {
					at = i;
					msg = "unexpected character";
					goto fail;
				}
				if ((e = postern__json_scan_number(doc, len, i, &at, &msg)) == 0)
					goto fail;
				i = e;
			}
			state = AFTER;
		} else if (state == KEY) {
			if (i >= len || doc[i] != '"') {
				at = i;
				msg = "expected a string key";
				goto fail;
			}
			if ((e = postern__json_scan_string(doc, len, i, &at, &msg)) == 0)
				goto fail;
			i = postern__json_ws(doc, len, e);
			if (i >= len || doc[i] != ':') {
				at = i;
				msg = "expected ':'";
				goto fail;
			}
			i = postern__json_ws(doc, len, i + 1);
			state = VALUE;
		} else { /* AFTER a value */
			i = postern__json_ws(doc, len, i);
			if (depth == 0)
				break;
			if (i < len && doc[i] == ',') {
				i = postern__json_ws(doc, len, i + 1);
				state = stack[depth - 1] == '{' ? KEY : VALUE;
			} else if (i < len && doc[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
				depth--;
				i++;
			} else {
				at = i;
				msg = stack[depth - 1] == '{' ? "expected ',' or '}'" : "expected ',' or ']'";
				goto fail;
			}
		}
	}
	if (i != len) {
		at = i;
		msg = "unexpected data after the document";
		goto fail;
	}
	*root = postern__json_value(doc, len, postern__json_ws(doc, len, 0));
	return 0;
fail:
	err->msg = msg;
	err->offset = (uint32_t)at;
	root->p = doc;
	root->n = 0;
	root->type = POSTERN_JSON_NONE;
	return -1;
}

/* postern_json_error_text writes "msg at byte N" into buf (NUL-terminated, cut to cap) and returns buf. */
static inline char *postern_json_error_text(const postern_json_error *err, char *buf, size_t cap) {
	char num[12];
	char *p = num + sizeof num;
	uint32_t v = err->offset;
	size_t w = 0;
	const char *parts[3];
	int k;
	if (cap == 0)
		return buf;
	*--p = 0;
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	parts[0] = err->msg ? err->msg : "invalid JSON";
	parts[1] = " at byte ";
	parts[2] = p;
	for (k = 0; k < 3; k++)
		for (const char *s = parts[k]; *s && w + 1 < cap; s++)
			buf[w++] = *s;
	buf[w] = 0;
	return buf;
}

/* postern_json_next iterates over an array's elements or an object's members. *pos starts at 0 and is advanced;
 * key (may be NULL) receives a member's name as a string value, or NONE for array elements. Returns 1 per element,
 * then 0. */
static inline int postern_json_next(postern_json c, uint32_t *pos, postern_json *key, postern_json *val) {
	size_t i = *pos == 0 ? 1 : *pos, n = c.n;
	postern_json none = {c.p, 0, POSTERN_JSON_NONE};
	if (c.type != POSTERN_JSON_OBJECT && c.type != POSTERN_JSON_ARRAY)
		return 0;
	i = postern__json_ws(c.p, n, i);
	if (i < n && c.p[i] == ',')
		i = postern__json_ws(c.p, n, i + 1);
	if (i >= n || c.p[i] == '}' || c.p[i] == ']') {
		*pos = (uint32_t)n;
		return 0;
	}
	if (key)
		*key = none;
	if (c.type == POSTERN_JSON_OBJECT) {
		postern_json k = postern__json_value(c.p, n, i);
		if (key)
			*key = k;
		i = postern__json_ws(c.p, n, i + k.n);
		if (i < n && c.p[i] == ':')
			i++;
		i = postern__json_ws(c.p, n, i);
	}
	*val = postern__json_value(c.p, n, i);
	*pos = (uint32_t)(i + val->n);
	return val->type != POSTERN_JSON_NONE;
}

/* postern__json_char decodes the string character at v.p[*i] into out (UTF-8) and returns its byte count; \u
 * surrogate pairs are joined, a lone surrogate becomes U+FFFD. */
static inline size_t postern__json_char(postern_json v, size_t *i, char out[4]) {
	const char *s = v.p;
	size_t n = v.n;
	unsigned cp;
	if (s[*i] != '\\') {
		out[0] = s[(*i)++];
		return 1;
	}
	if (*i + 1 >= n) {
		(*i)++;
		return 0;
	}
	*i += 2;
	switch (s[*i - 1]) {
	case 'b':
		out[0] = '\b';
		return 1;
	case 'f':
		out[0] = '\f';
		return 1;
	case 'n':
		out[0] = '\n';
		return 1;
	case 'r':
		out[0] = '\r';
		return 1;
	case 't':
		out[0] = '\t';
		return 1;
	case 'u':
		break;
	default:
		out[0] = s[*i - 1];
		return 1;
	}
	if (*i + 4 > n)
		return 0;
	cp = (unsigned)(postern__json_hex(s[*i]) << 12 | postern__json_hex(s[*i + 1]) << 8 |
			postern__json_hex(s[*i + 2]) << 4 | postern__json_hex(s[*i + 3]));
	*i += 4;
	if (cp >= 0xD800 && cp <= 0xDBFF && *i + 6 <= n && s[*i] == '\\' && s[*i + 1] == 'u') {
		unsigned lo = (unsigned)(postern__json_hex(s[*i + 2]) << 12 | postern__json_hex(s[*i + 3]) << 8 |
					 postern__json_hex(s[*i + 4]) << 4 | postern__json_hex(s[*i + 5]));
		if (lo >= 0xDC00 && lo <= 0xDFFF) {
			cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			*i += 6;
		}
	}
	if (cp >= 0xD800 && cp <= 0xDFFF)
		cp = 0xFFFD;
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* postern_json_string decodes a string value into buf as UTF-8 (NUL-terminated, cut to cap) and returns its full
 * decoded length, or -1 when v is not a string. A \u0000 escape yields a NUL byte inside the result. */
static inline int32_t postern_json_string(postern_json v, char *buf, size_t cap) {
	size_t i = 1, w = 0, end;
	if (v.type != POSTERN_JSON_STRING)
		return -1;
	end = v.n > 0 ? v.n - 1 : 0; /* the closing quote */
	while (i < end) {
		char ch[4];
		size_t k, c = postern__json_char(v, &i, ch);
		for (k = 0; k < c; k++, w++)
			if (w + 1 < cap)
				buf[w] = ch[k];
	}
	if (cap > 0)
		buf[w < cap ? w : cap - 1] = 0;
	return (int32_t)w;
}

/* postern_json_eq reports whether v is a string whose decoded text is s. */
static inline int postern_json_eq(postern_json v, const char *s) {
	size_t i = 1, w = 0, end, sl = strlen(s);
	if (v.type != POSTERN_JSON_STRING)
		return 0;
	end = v.n > 0 ? v.n - 1 : 0;
	while (i < end) {
		char ch[4];
		size_t c = postern__json_char(v, &i, ch);
		if (c > sl - w || memcmp(s + w, ch, c) != 0)
			return 0;
		w += c;
	}
	return w == sl;
}

/* postern_json_get returns the first member called key of an object, or a NONE value. */
static inline postern_json postern_json_get(postern_json obj, const char *key) {
	uint32_t pos = 0;
	postern_json k, v, none = {obj.p, 0, POSTERN_JSON_NONE};
	while (postern_json_next(obj, &pos, &k, &v))
		if (postern_json_eq(k, key))
			return v;
	return none;
}

/* postern_json_at returns element i of an array, or a NONE value. */
static inline postern_json postern_json_at(postern_json arr, uint32_t i) {
	uint32_t pos = 0;
	postern_json v, none = {arr.p, 0, POSTERN_JSON_NONE};
	if (arr.type != POSTERN_JSON_ARRAY)
		return none;
	while (postern_json_next(arr, &pos, NULL, &v))
		if (i-- == 0)
			return v;
	return none;
}

/* postern_json_len returns the number of elements of an array or members of an object (0 for anything else). */
static inline uint32_t postern_json_len(postern_json c) {
	uint32_t pos = 0, count = 0;
	postern_json v;
	while (postern_json_next(c, &pos, NULL, &v))
		count++;
	return count;
}

/* postern_json_bool sets *out from true or false; -1 for any other value. */
static inline int postern_json_bool(postern_json v, int *out) {
	if (v.type != POSTERN_JSON_TRUE && v.type != POSTERN_JSON_FALSE)
		return -1;
	*out = v.type == POSTERN_JSON_TRUE;
	return 0;
}

/* postern_json_number sets *out to a number value (nearest double, strtod); -1 for a non-number or a number written
 * with more than 63 characters. */
static inline int postern_json_number(postern_json v, double *out) {
	char buf[64];
	if (v.type != POSTERN_JSON_NUMBER || v.n == 0 || v.n >= sizeof buf)
		return -1;
	memcpy(buf, v.p, v.n);
	buf[v.n] = 0;
	*out = strtod(buf, NULL);
	return 0;
}

/* postern_json_int sets *out to an integer value written without fraction or exponent; -1 for anything else,
 * including values outside int64_t. */
static inline int postern_json_int(postern_json v, int64_t *out) {
	uint64_t acc = 0, limit;
	size_t i = 0;
	int neg = 0;
	if (v.type != POSTERN_JSON_NUMBER || v.n == 0)
		return -1;
	if (v.p[0] == '-') {
		neg = 1;
		i = 1;
	}
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	if (i == v.n)
		return -1;
	for (; i < v.n; i++) {
		unsigned d;
		if (v.p[i] < '0' || v.p[i] > '9')
			return -1;
		d = (unsigned)(v.p[i] - '0');
		if (acc > (limit - d) / 10)
			return -1;
		acc = acc * 10 + d;
	}
	*out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
	return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* POSTERN_JSON_H */
