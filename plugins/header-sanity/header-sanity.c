//go:build ignore

// The line above keeps the Go tool from taking this folder (which holds the plugin's Go test) for a cgo package.

/*
 * header-sanity: RFC 5322 sanity checks on the top-level message header.
 *
 * Each problem found adds a tag (header-sanity.<check>) and a configurable score. The only verdicts are the
 * optional rejections of a message without a From field (reject_missing_from) or with several
 * (reject_multiple_from); by default the plugin only tags and scores, and the policy decides with thresholds.
 * README.md in this folder documents the checks, tags and configuration.
 */
#include <stdlib.h>
#include <string.h>

#include "postern.h"
#include "postern_json.h"

POSTERN_ABI_VERSION;

/* ------------------------------------------------------------------------------------------------------------
 * Configuration.
 */

/* Scores are bounded so that a typo (1e9) cannot swamp every other plugin of a chain. */
#define SCORE_LIMIT 1000.0

struct config {
	int reject_missing_from;
	int reject_multiple_from;
	int relaxed_submission;
	double score_missing_from;
	double score_multiple_from;
	double score_missing_date;
	double score_missing_message_id;
	double score_duplicate;
	double score_8bit;
	double score_malformed;
};

static struct config cfg;

static void config_defaults(struct config *c) {
	c->reject_missing_from = 0;
	c->reject_multiple_from = 0;
	c->relaxed_submission = 1;
	c->score_missing_from = 2.0;
	c->score_multiple_from = 2.0;
	c->score_missing_date = 1.0;
	c->score_missing_message_id = 0.5;
	c->score_duplicate = 1.0;
	c->score_8bit = 1.0;
	c->score_malformed = 1.0;
}

enum key_type { KEY_BOOL, KEY_SCORE };

struct key {
	const char *name;
	enum key_type type;
	size_t offset;
};

static const struct key keys[] = {
	{"reject_missing_from", KEY_BOOL, offsetof(struct config, reject_missing_from)},
	{"reject_multiple_from", KEY_BOOL, offsetof(struct config, reject_multiple_from)},
	{"relaxed_submission", KEY_BOOL, offsetof(struct config, relaxed_submission)},
	{"score_missing_from", KEY_SCORE, offsetof(struct config, score_missing_from)},
	{"score_multiple_from", KEY_SCORE, offsetof(struct config, score_multiple_from)},
	{"score_missing_date", KEY_SCORE, offsetof(struct config, score_missing_date)},
	{"score_missing_message_id", KEY_SCORE, offsetof(struct config, score_missing_message_id)},
	{"score_duplicate", KEY_SCORE, offsetof(struct config, score_duplicate)},
	{"score_8bit", KEY_SCORE, offsetof(struct config, score_8bit)},
	{"score_malformed", KEY_SCORE, offsetof(struct config, score_malformed)},
};

/* text is a bounded string builder for log lines and tag values: it never overflows, it truncates. */
struct text {
	char buf[1024];
	size_t len;
};

static void text_reset(struct text *t) {
	t->len = 0;
	t->buf[0] = 0;
}

static void text_putn(struct text *t, const char *s, size_t n) {
	size_t room = sizeof t->buf - 1 - t->len;
	if (n > room)
		n = room;
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = 0;
}

static void text_puts(struct text *t, const char *s) { text_putn(t, s, strlen(s)); }

static void text_putu(struct text *t, size_t v) {
	char d[24];
	char *p = d + sizeof d;
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	text_putn(t, p, (size_t)(d + sizeof d - p));
}

/* config_fail writes "configuration: <what> (byte N)" into err. */
static int config_fail(struct text *err, const char *key, const char *what, size_t at) {
	text_reset(err);
	text_puts(err, "configuration: ");
	if (key != NULL) {
		text_puts(err, key);
		text_puts(err, " ");
	}
	text_puts(err, what);
	text_puts(err, " (byte ");
	text_putu(err, at);
	text_puts(err, ")");
	return -1;
}

/* config_parse reads the configuration object into c. Unknown keys are errors, so that a misspelt option is
 * refused at load rather than silently ignored. */
static int config_parse(const char *doc, size_t n, struct config *c, struct text *err) {
	postern_json root, k, v;
	postern_json_error jerr;
	uint32_t pos = 0;
	if (postern_json_parse(doc, n, &root, &jerr) < 0)
		return config_fail(err, NULL, jerr.msg, jerr.offset);
	if (root.type != POSTERN_JSON_OBJECT)
		return config_fail(err, NULL, "must be a JSON object", (size_t)(root.p - doc));
	while (postern_json_next(root, &pos, &k, &v)) {
		const struct key *key = NULL;
		size_t x, at = (size_t)(v.p - doc);
		for (x = 0; x < sizeof keys / sizeof keys[0] && key == NULL; x++)
			if (postern_json_eq(k, keys[x].name))
				key = &keys[x];
		if (key == NULL) {
			char name[80];
			postern_json_string(k, name, sizeof name);
			text_reset(err);
			text_puts(err, "configuration: unknown key \"");
			text_puts(err, name);
			text_puts(err, "\" (byte ");
			text_putu(err, (size_t)(k.p - doc));
			text_puts(err, "; the keys are listed in plugins/header-sanity/README.md)");
			return -1;
		}
		if (key->type == KEY_BOOL) {
			if (postern_json_bool(v, (int *)((char *)c + key->offset)) < 0)
				return config_fail(err, key->name, "must be true or false", at);
		} else {
			double d;
			if (postern_json_number(v, &d) < 0)
				return config_fail(err, key->name, "must be a number", at);
			if (!(d >= -SCORE_LIMIT && d <= SCORE_LIMIT))
				return config_fail(err, key->name, "must be between -1000 and 1000", at);
			*(double *)((char *)c + key->offset) = d;
		}
	}
	return 0;
}

/* The configuration is a handful of keys; anything bigger is a mistake, not a configuration. */
#define CONFIG_MAX 4096

POSTERN_INIT() {
	static char buf[CONFIG_MAX];
	static struct text err;
	int32_t n = postern_config_get(buf, sizeof buf);
	config_defaults(&cfg);
	if (n < 0) {
		postern_error("configuration: config_get failed");
		return 1;
	}
	if ((size_t)n > sizeof buf) {
		text_reset(&err);
		text_puts(&err, "configuration: ");
		text_putu(&err, (size_t)n);
		text_puts(&err, " bytes, more than the 4096 this plugin accepts");
		postern_error(err.buf);
		return 1;
	}
	if (config_parse(buf, (size_t)n, &cfg, &err) < 0) {
		postern_error(err.buf);
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------------------------
 * Checks.
 */

/* Fields RFC 5322 section 3.6 allows at most once (From is checked on its own: it must be there, too). */
static const char *const singletons[] = {
	"Date", "Sender", "Reply-To", "To", "Cc", "Bcc", "Message-ID", "In-Reply-To", "References", "Subject",
};

/* The header block is read whole (header_all has no offset); hosts bound it (256 KiB by default). Past this cap the
 * first HEADER_MAX bytes are still scanned. */
#define HEADER_MAX (1u << 20)

#define HEADER_FIRST 16384 /* most headers fit */
#define HEADER_KEEP 65536  /* a bigger buffer is freed after the call */

static char *hdr;
static size_t hdr_cap;

/* read_header returns the top-level header block in hdr and its scanned length in *len, or -1 (logged). */
static int read_header(size_t *len) {
	int32_t n = postern_header_all(0, hdr, (uint32_t)hdr_cap);
	if (n < 0) {
		postern_error("header_all failed");
		return -1;
	}
	if ((size_t)n > hdr_cap && hdr_cap < HEADER_MAX) {
		size_t want = (size_t)n < HEADER_MAX ? (size_t)n : HEADER_MAX;
		char *p = realloc(hdr, want);
		if (p != NULL) {
			hdr = p;
			hdr_cap = want;
			n = postern_header_all(0, hdr, (uint32_t)hdr_cap);
			if (n < 0) {
				postern_error("header_all failed");
				return -1;
			}
		}
	}
	if ((size_t)n > hdr_cap)
		postern_warn("header block larger than the scan buffer: only its start was checked for 8-bit bytes");
	*len = (size_t)n < hdr_cap ? (size_t)n : hdr_cap;
	return 0;
}

/*
 * Every loop iteration of a guest pays the host's interrupt check (an exit to the host), which costs far more than
 * the loop's own work. So the header is scanned 64 bytes per iteration, and the byte-by-byte work happens only
 * around a hit.
 */
#define HIGH_BITS 0x8080808080808080ull

/* first_8bit returns the offset of the first byte >= 0x80 in h[0:n], or n. */
static size_t first_8bit(const char *h, size_t n) {
	size_t i = 0, k;
	for (; i < n; i += 64) {
		uint64_t w[8] = {0};
		memcpy(w, h + i, n - i < 64 ? n - i : 64);
		if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) & HIGH_BITS)
			break;
	}
	for (k = i; k < n; k++)
		if ((unsigned char)h[k] >= 0x80)
			return k;
	return n;
}

/* field_name_at writes the name of the field that holds offset at of the header block h[0:n] (made printable) to
 * name: the start of its line, or of the first line above that does not begin with white space (a folded line
 * belongs to the field above it). */
static void field_name_at(const char *h, size_t n, size_t at, struct text *name) {
	size_t start = at, e;
	for (;;) {
		while (start > 0 && h[start - 1] != '\n')
			start--;
		if (start == 0 || (h[start] != ' ' && h[start] != '\t'))
			break;
		start--; /* onto the previous line's LF */
	}
	text_reset(name);
	for (e = start; e < n && h[e] != ':' && h[e] != '\r' && h[e] != '\n' && e - start < 76; e++) {
		char ch = h[e] >= 0x21 && h[e] <= 0x7e ? h[e] : '?';
		text_putn(name, &ch, 1);
	}
	if (name->len == 0)
		text_puts(name, "?");
}

/* field_at reports whether the top-level header has an index-th field called name: 1 (and its value's length in
 * *len when len is not NULL), 0, or a negative host error. With limit 0 the host copies nothing. */
static int32_t field_at(const char *name, uint32_t index, int32_t *len) {
	int32_t n = postern_header_get(0, name, (uint32_t)strlen(name), index, 0, NULL, 0);
	if (n == POSTERN_ERR_NOT_FOUND)
		return 0;
	if (n < 0)
		return n;
	if (len != NULL)
		*len = n;
	return 1;
}

/* field_is reports whether the context field name has the value want (absent fields never do). */
static int field_is(const char *name, const char *want) {
	char v[32];
	int32_t n = postern_field(name, 0, v, sizeof v);
	return n >= 0 && (size_t)n < sizeof v && strcmp(v, want) == 0;
}

/* kind_clean makes a defect kind safe for a comma-separated tag value: hosts give short lower-case tokens, but a
 * tag must stay valid UTF-8 whatever they send. */
static void kind_clean(char *k) {
	for (; *k; k++)
		if (*k < 0x21 || *k > 0x7e || *k == ',')
			*k = '?';
}

/* list_has reports whether the comma-separated list holds item. */
static int list_has(const struct text *list, const char *item) {
	size_t n = strlen(item), i = 0;
	while (i < list->len) {
		size_t e = i;
		while (e < list->len && list->buf[e] != ',')
			e++;
		if (e - i == n && memcmp(list->buf + i, item, n) == 0)
			return 1;
		i = e + 1;
	}
	return 0;
}

/* A message has a bounded number of defects; this only guards the loop against a host that never says "done". */
#define DEFECTS_MAX 1000

POSTERN_ON_MESSAGE() {
	static struct text list, name;
	double score = 0;
	int32_t n;
	size_t i, hlen;
	int reject = 0;
	const char *reason = NULL;
	int relaxed = cfg.relaxed_submission && field_is("protocol", "submission");

	/* From: exactly once, and not empty. One host call per question: "is there a second one?", "a first one?" */
	if ((n = field_at("From", 1, NULL)) < 0)
		goto hostfail;
	if (n == 1) {
		postern_tag("header-sanity.from", "multiple");
		score += cfg.score_multiple_from;
		if (cfg.reject_multiple_from) {
			reject = 1;
			reason = "message has more than one From header field (RFC 5322 section 3.6)";
		}
	} else {
		int32_t len = 0;
		if ((n = field_at("From", 0, &len)) < 0)
			goto hostfail;
		if (n == 0 || len == 0) {
			postern_tag("header-sanity.from", n == 0 ? "missing" : "empty");
			score += cfg.score_missing_from;
			if (cfg.reject_missing_from) {
				reject = 1;
				reason = "message has no From header field (RFC 5322 section 3.6)";
			}
		}
	}

	/* Date and Message-ID: RFC 6409 sections 8.2 and 8.3 let a submission server add them, so a client's
	 * submission without them is normal. */
	if (!relaxed) {
		if ((n = field_at("Date", 0, NULL)) < 0)
			goto hostfail;
		if (n == 0) {
			postern_tag("header-sanity.date", "missing");
			score += cfg.score_missing_date;
		}
		if ((n = field_at("Message-ID", 0, NULL)) < 0)
			goto hostfail;
		if (n == 0) {
			postern_tag("header-sanity.message-id", "missing");
			score += cfg.score_missing_message_id;
		}
	}

	/* Fields allowed at most once: a second copy is the whole question. */
	text_reset(&list);
	for (i = 0; i < sizeof singletons / sizeof singletons[0]; i++) {
		if ((n = field_at(singletons[i], 1, NULL)) < 0)
			goto hostfail;
		if (n == 1) {
			if (list.len)
				text_puts(&list, ",");
			text_puts(&list, singletons[i]);
			score += cfg.score_duplicate;
		}
	}
	if (list.len)
		postern_tag("header-sanity.duplicate", list.buf);

	/* 8-bit bytes: only an SMTPUTF8 transaction (RFC 6532) may carry raw UTF-8 in the header. */
	if (!field_is("smtputf8", "1")) {
		if (hdr == NULL) {
			hdr_cap = HEADER_FIRST;
			hdr = malloc(hdr_cap);
			if (hdr == NULL)
				hdr_cap = 0;
		}
		if (read_header(&hlen) < 0)
			return 1;
		if ((i = first_8bit(hdr, hlen)) < hlen) {
			field_name_at(hdr, hlen, i, &name);
			postern_tag("header-sanity.8bit", name.buf);
			score += cfg.score_8bit;
		}
		/* Keep a small buffer for the next call, not the biggest header ever seen. */
		if (hdr_cap > HEADER_KEEP) {
			free(hdr);
			hdr = NULL;
			hdr_cap = 0;
		}
	}

	/* Defects the host's parser found ("kind: detail"): the distinct kinds, in order of appearance. */
	text_reset(&list);
	for (i = 0; i < DEFECTS_MAX; i++) {
		char d[64];
		char *colon;
		n = postern_field("message.malformed", (uint32_t)i, d, sizeof d);
		if (n == POSTERN_ERR_NOT_FOUND)
			break;
		if (n < 0)
			goto hostfail;
		colon = strchr(d, ':');
		if (colon != NULL)
			*colon = 0;
		kind_clean(d);
		if (list_has(&list, d))
			continue;
		if (list.len)
			text_puts(&list, ",");
		text_puts(&list, d);
	}
	if (i > 0) {
		postern_tag("header-sanity.malformed", list.buf);
		score += cfg.score_malformed;
	}

	if (score != 0 && postern_score(score) < 0)
		goto hostfail;
	if (reject)
		postern_reject(550, "5.7.1", reason);
	return 0;

hostfail:
	postern_error("unexpected error from the host while reading the header");
	return 1;
}
