/*
 * scripted: a test plugin whose behaviour is its configuration, so that policy tests can build any chain from one
 * tiny module. The configuration is a JSON string of space-separated actions, applied at every hook it exports:
 *
 *   verdict=KIND[:CODE]   set_verdict (accept, reject, tempfail, discard, quarantine)
 *   score=N               score_add(N)
 *   tag=KEY:VALUE         tag_add
 *   header=NAME:VALUE     header_add (message hook only; elsewhere the host refuses it, which is ignored)
 *   fail                  the hook returns 1: a plugin failure, answered with on_error
 *   initfail              postern_init refuses the configuration
 *   initloop              postern_init never returns (a plugin stuck in its initialisation)
 *
 * It uses the raw imports rather than the C SDK so that it tests the engine, not the SDK. Variants: ONLY_MESSAGE
 * exports only the message hook; ABI_VERSION changes the version it claims.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef ABI_VERSION
#define ABI_VERSION 1
#endif

#define IMPORT(n) __attribute__((import_module("postern"), import_name(#n)))
#define EXPORT(n) __attribute__((export_name(#n)))

IMPORT(config_get) int32_t config_get(char *buf, uint32_t limit);
IMPORT(set_verdict) int32_t set_verdict(int32_t kind, int32_t code, const char *enh, uint32_t enh_len,
                                        const char *text, uint32_t text_len);
IMPORT(tag_add) int32_t tag_add(const char *k, uint32_t kl, const char *v, uint32_t vl);
IMPORT(score_add) int32_t score_add(double delta);
IMPORT(header_add) int32_t header_add(const char *n, uint32_t nl, const char *v, uint32_t vl);

static char spec[4096];
static uint32_t spec_len;

EXPORT(postern_abi_version) int32_t postern_abi_version(void) { return ABI_VERSION; }

/* word_is reports whether the n bytes at w are exactly s. */
static int word_is(const char *w, uint32_t n, const char *s) { return strlen(s) == n && memcmp(w, s, n) == 0; }

EXPORT(postern_init) int32_t postern_init(void) {
	int32_t n = config_get(spec, sizeof spec - 1);
	if (n < 2 || (uint32_t)n >= sizeof spec || spec[0] != '"') {
		spec_len = 0;
		return 0;
	}
	/* Strip the JSON string's quotes; the tests use no escapes. */
	memmove(spec, spec + 1, (size_t)n - 2);
	spec_len = (uint32_t)n - 2;
	spec[spec_len] = 0;
	for (uint32_t i = 0; i < spec_len;) {
		uint32_t j = i;
		while (j < spec_len && spec[j] != ' ') j++;
		if (word_is(spec + i, j - i, "initfail")) return 1;
		if (word_is(spec + i, j - i, "initloop"))
			for (volatile uint32_t k = 0;; k++) {
			}
		i = j + 1;
	}
	return 0;
}

static int32_t kind_of(const char *w, uint32_t n) {
	static const char *kinds[] = {"accept", "reject", "tempfail", "discard", "quarantine"};
	for (int32_t k = 0; k < 5; k++)
		if (word_is(w, n, kinds[k])) return k;
	return -1;
}

static int32_t act(void) {
	for (uint32_t i = 0; i < spec_len;) {
		uint32_t j = i;
		while (j < spec_len && spec[j] != ' ') j++;
		char *w = spec + i, *end = spec + j;
		char *eq = memchr(w, '=', (size_t)(end - w));
		if (word_is(w, (uint32_t)(end - w), "fail")) return 1;
		if (eq) {
			char *v = eq + 1;
			uint32_t vn = (uint32_t)(end - v);
			char *colon = memchr(v, ':', vn);
			if (word_is(w, (uint32_t)(eq - w), "verdict")) {
				uint32_t kn = colon ? (uint32_t)(colon - v) : vn;
				int32_t code = colon ? (int32_t)strtol(colon + 1, NULL, 10) : 0;
				set_verdict(kind_of(v, kn), code, "", 0, "scripted", 8);
			} else if (word_is(w, (uint32_t)(eq - w), "score")) {
				char tmp[64];
				uint32_t tn = vn < sizeof tmp - 1 ? vn : sizeof tmp - 1;
				memcpy(tmp, v, tn);
				tmp[tn] = 0;
				score_add(strtod(tmp, NULL));
			} else if (colon && word_is(w, (uint32_t)(eq - w), "tag")) {
				tag_add(v, (uint32_t)(colon - v), colon + 1, (uint32_t)(end - colon - 1));
			} else if (colon && word_is(w, (uint32_t)(eq - w), "header")) {
				header_add(v, (uint32_t)(colon - v), colon + 1, (uint32_t)(end - colon - 1));
			}
		}
		i = j + 1;
	}
	return 0;
}

EXPORT(postern_on_message) int32_t postern_on_message(void) { return act(); }

#ifndef ONLY_MESSAGE
EXPORT(postern_on_connect) int32_t postern_on_connect(void) { return act(); }
EXPORT(postern_on_mail_from) int32_t postern_on_mail_from(void) { return act(); }
EXPORT(postern_on_rcpt_to) int32_t postern_on_rcpt_to(void) { return act(); }
#endif
