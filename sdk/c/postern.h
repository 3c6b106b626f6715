/*
 * postern.h: the C SDK for Postern filter plugins, ABI version 1 (sdk/ABI.md is the contract).
 *
 * A plugin is a WASI reactor built with clang and wasi-libc:
 *
 *     clang --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -O2 -I sdk/c \
 *           -Wl,--export=postern_abi_version -Wl,--strip-all -o plugin.wasm plugin.c
 *
 * and has, in exactly one of its source files:
 *
 *     POSTERN_ABI_VERSION;
 *
 *     POSTERN_ON_MESSAGE() {            // export only the hooks you implement
 *         ...
 *         return 0;                     // 0: the hook ran; anything else is a plugin failure (on_error)
 *     }
 *
 * The header has two layers.
 *
 *  - Raw imports, one per host function, named postern_<ABI name> (postern_header_get, postern_tag_add, ...).
 *    They take (pointer, length) pairs exactly as ABI.md section 3 says. POSTERN_LIT("Subject") expands to such a
 *    pair for a string literal.
 *  - Static inline helpers that take NUL-terminated strings and write NUL-terminated results into a caller's
 *    buffer (postern_header, postern_field, postern_tag, postern_reject, postern_add_header, ...).
 *
 * Every function that fills a buffer returns the FULL length of the value, as the ABI does: a result >= the
 * buffer's capacity means the copy was cut short (like snprintf). Negative results are POSTERN_ERR_* codes.
 *
 * Nothing here allocates. Buffers live where the plugin puts them; the default wasm-ld stack is only 64 KiB, so
 * keep big buffers static or on the heap.
 */
#ifndef POSTERN_H
#define POSTERN_H

#include <stddef.h>
#include <stdint.h>

#if !defined(__wasm32__)
#error "postern.h is for WebAssembly plugins: build with clang --target=wasm32-wasi"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header implements (ABI.md section 5). */
#define POSTERN_ABI 1

/* Results: a negative value from a host function (ABI.md section 3.1). */
#define POSTERN_OK 0
#define POSTERN_ERR_NOT_FOUND (-1)   /* no such header, field, part, or index past the last one */
#define POSTERN_ERR_INVALID (-2)     /* an argument is not acceptable */
#define POSTERN_ERR_UNAVAILABLE (-3) /* not available at this hook */
#define POSTERN_ERR_DECODE (-4)      /* the part could not be decoded; raw bytes are still readable */

/* Field names for postern_field (ABI.md section 3.2). Where a field is not known (a protocol without it, such as
 * POSTERN_FIELD_MAIL_FROM in POP3 and IMAP, or a hook before it is given, such as POSTERN_FIELD_CLIENT_HELO at
 * connect) postern_field returns POSTERN_ERR_UNAVAILABLE, never an empty string. */
#define POSTERN_FIELD_HOOK "hook"
#define POSTERN_FIELD_PROTOCOL "protocol"
#define POSTERN_FIELD_DIRECTION "direction"
#define POSTERN_FIELD_LISTENER "listener"
#define POSTERN_FIELD_CLIENT_IP "client.ip"
#define POSTERN_FIELD_CLIENT_PORT "client.port"
#define POSTERN_FIELD_CLIENT_HELO "client.helo"
#define POSTERN_FIELD_TLS_VERSION "tls.version"
#define POSTERN_FIELD_TLS_CIPHER "tls.cipher"
#define POSTERN_FIELD_UPSTREAM_TLS_VERSION "upstream.tls.version"
#define POSTERN_FIELD_UPSTREAM_TLS_CIPHER "upstream.tls.cipher"
#define POSTERN_FIELD_AUTH_USER "auth.user"
#define POSTERN_FIELD_MAIL_FROM "mail_from"
#define POSTERN_FIELD_SMTPUTF8 "smtputf8"
#define POSTERN_FIELD_RCPT "rcpt" /* several values: index 0, 1, ... until POSTERN_ERR_NOT_FOUND */
#define POSTERN_FIELD_RCPT_CURRENT "rcpt.current"
#define POSTERN_FIELD_MAILBOX_USER "mailbox.user"
#define POSTERN_FIELD_MAILBOX_NAME "mailbox.name"
#define POSTERN_FIELD_MESSAGE_UID "message.uid"
#define POSTERN_FIELD_MESSAGE_UIDVALIDITY "message.uidvalidity"
#define POSTERN_FIELD_MESSAGE_UIDL "message.uidl"
#define POSTERN_FIELD_MESSAGE_INTERNAL_DATE "message.internal_date"
#define POSTERN_FIELD_MESSAGE_FLAGS "message.flags" /* several values */
#define POSTERN_FIELD_COMMAND "command"
#define POSTERN_FIELD_MESSAGE_SIZE "message.size"
#define POSTERN_FIELD_MESSAGE_MALFORMED "message.malformed" /* several values */
#define POSTERN_FIELD_MESSAGE_AMBIGUOUS "message.ambiguous" /* several values */
#define POSTERN_FIELD_MESSAGE_LIMIT_EXCEEDED "message.limit_exceeded"

/* Hook bits (ABI.md section 2.1), for a postern_hooks export. */
#define POSTERN_HOOK_CONNECT 0x1u
#define POSTERN_HOOK_MAIL_FROM 0x2u
#define POSTERN_HOOK_RCPT_TO 0x4u
#define POSTERN_HOOK_MESSAGE 0x8u

/* Message shapes for a postern_wants export (ABI.md section 2.2): the message hook runs only for these. */
#define POSTERN_WANT_FILES 0x1u /* messages that may carry a file */

/* header_get flags. */
#define POSTERN_HEADER_DECODED 0x1u /* decode RFC 2047 encoded words to UTF-8 */

/* Content modes for part_read, part_match and part_sha256. */
#define POSTERN_MODE_RAW 0     /* the body bytes as received */
#define POSTERN_MODE_DECODED 1 /* base64 / quoted-printable undone */
#define POSTERN_MODE_TEXT 2    /* decoded and converted to UTF-8 */

/* Verdict kinds for set_verdict. */
#define POSTERN_ACCEPT 0
#define POSTERN_REJECT 1
#define POSTERN_TEMPFAIL 2
#define POSTERN_DISCARD 3
#define POSTERN_QUARANTINE 4

/* Log levels. */
#define POSTERN_LOG_DEBUG 0
#define POSTERN_LOG_INFO 1
#define POSTERN_LOG_WARN 2
#define POSTERN_LOG_ERROR 3

/* POSTERN_LIT("x") is the (pointer, length) pair of a string literal, for the raw imports. */
#define POSTERN_LIT(s) ("" s), ((uint32_t)(sizeof("" s) - 1))

/* ---------------------------------------------------------------------------------------------------------------
 * Exports.
 *
 * POSTERN_ABI_VERSION, written once at file scope (with its semicolon), defines the required
 * postern_abi_version export. The hook macros open the definition of one hook export:
 *
 *     POSTERN_INIT() { ...read config...; return 0; }
 *     POSTERN_ON_MESSAGE() { ...; return 0; }
 *
 * The host calls only the hooks a module exports, so define only those you implement.
 */
#define POSTERN_EXPORT(name) __attribute__((export_name(name), visibility("default")))

#ifdef __cplusplus
#define POSTERN__STATIC_ASSERT static_assert
#else
#define POSTERN__STATIC_ASSERT _Static_assert
#endif

/* The trailing assertion is a declaration, so "POSTERN_ABI_VERSION;" is valid C at file scope. */
#define POSTERN_ABI_VERSION                                                                                          \
	POSTERN_EXPORT("postern_abi_version") int32_t postern_abi_version(void) { return POSTERN_ABI; }                \
	POSTERN__STATIC_ASSERT(POSTERN_ABI == 1, "postern.h implements ABI version 1")

#define POSTERN_INIT() POSTERN_EXPORT("postern_init") int32_t postern_init(void)
#define POSTERN_ON_CONNECT() POSTERN_EXPORT("postern_on_connect") int32_t postern_on_connect(void)
#define POSTERN_ON_MAIL_FROM() POSTERN_EXPORT("postern_on_mail_from") int32_t postern_on_mail_from(void)
#define POSTERN_ON_RCPT_TO() POSTERN_EXPORT("postern_on_rcpt_to") int32_t postern_on_rcpt_to(void)
#define POSTERN_ON_MESSAGE() POSTERN_EXPORT("postern_on_message") int32_t postern_on_message(void)
/* POSTERN_WANTS() { return POSTERN_WANT_FILES; } declares what the message hook is for; read after postern_init. */
#define POSTERN_WANTS() POSTERN_EXPORT("postern_wants") int32_t postern_wants(void)

/* ---------------------------------------------------------------------------------------------------------------
 * Raw imports: ABI.md section 3, one declaration per host function.
 */
#define POSTERN_IMPORT(name) __attribute__((import_module("postern"), import_name(name)))

/* 3.2 Context and configuration. */
POSTERN_IMPORT("config_get") int32_t postern_config_get(void *buf, uint32_t limit);
POSTERN_IMPORT("field_get")
int32_t postern_field_get(const char *name, uint32_t name_len, uint32_t index, void *buf, uint32_t limit);

/* 3.3 Reading the message (message hook only). */
POSTERN_IMPORT("header_get")
int32_t postern_header_get(int32_t part, const char *name, uint32_t name_len, uint32_t index, uint32_t flags,
			   void *buf, uint32_t limit);
POSTERN_IMPORT("header_all") int32_t postern_header_all(int32_t part, void *buf, uint32_t limit);
POSTERN_IMPORT("part_count") int32_t postern_part_count(void);
POSTERN_IMPORT("part_field")
int32_t postern_part_field(int32_t part, const char *name, uint32_t name_len, void *buf, uint32_t limit);
POSTERN_IMPORT("part_read")
int32_t postern_part_read(int32_t part, uint32_t mode, uint32_t offset, void *buf, uint32_t limit);
POSTERN_IMPORT("message_read") int32_t postern_message_read(uint32_t offset, void *buf, uint32_t limit);

/* 3.4 Host-side helpers. */
POSTERN_IMPORT("patterns_compile") int32_t postern_patterns_compile(const char *patterns, uint32_t len);
POSTERN_IMPORT("part_match")
int32_t postern_part_match(int32_t part, uint32_t mode, int32_t handle, uint32_t max_matches, void *buf,
			   uint32_t limit);
POSTERN_IMPORT("part_sha256") int32_t postern_part_sha256(int32_t part, uint32_t mode, void *buf32);

/* 3.5 Deciding. */
POSTERN_IMPORT("set_verdict")
int32_t postern_set_verdict(uint32_t kind, uint32_t code, const char *enh, uint32_t enh_len, const char *text,
			    uint32_t text_len);
POSTERN_IMPORT("tag_add")
int32_t postern_tag_add(const char *key, uint32_t key_len, const char *val, uint32_t val_len);
POSTERN_IMPORT("score_add") int32_t postern_score_add(double delta);
POSTERN_IMPORT("log") int32_t postern_log(uint32_t level, const char *text, uint32_t len);

/* 3.6 Changing the message. */
POSTERN_IMPORT("header_add")
int32_t postern_header_add(const char *name, uint32_t name_len, const char *val, uint32_t val_len);
POSTERN_IMPORT("header_set")
int32_t postern_header_set(const char *name, uint32_t name_len, const char *val, uint32_t val_len);
POSTERN_IMPORT("header_remove") int32_t postern_header_remove(const char *name, uint32_t name_len);
POSTERN_IMPORT("subject_prefix") int32_t postern_subject_prefix(const char *prefix, uint32_t len);
POSTERN_IMPORT("banner_add")
int32_t postern_banner_add(const char *text, uint32_t text_len, const char *html, uint32_t html_len);
POSTERN_IMPORT("part_remove") int32_t postern_part_remove(int32_t part);
POSTERN_IMPORT("part_replace")
int32_t postern_part_replace(int32_t part, const char *ctype, uint32_t ctype_len, const void *data,
			     uint32_t data_len);
POSTERN_IMPORT("rcpt_add") int32_t postern_rcpt_add(const char *addr, uint32_t len);

/* ---------------------------------------------------------------------------------------------------------------
 * Helpers. Strings are NUL-terminated; a NULL string is the empty string.
 */

/* postern__len is strlen that accepts NULL; __builtin_strlen folds to a constant for literals. */
static inline uint32_t postern__len(const char *s) { return s ? (uint32_t)__builtin_strlen(s) : 0; }
static inline const char *postern__str(const char *s) { return s ? s : ""; }

/* postern__lim is the limit to pass for a C-string buffer of cap bytes: room is kept for the NUL. */
static inline uint32_t postern__lim(size_t cap) { return cap > 0 ? (uint32_t)(cap - 1) : 0; }

/* postern__nul terminates what a host function wrote into buf and passes its result n through. */
static inline int32_t postern__nul(int32_t n, char *buf, size_t cap) {
	if (cap > 0)
		buf[n <= 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1)] = 0;
	return n;
}

/* postern_config copies the plugin's JSON configuration ("{}" when none) into buf as a C string and returns its
 * full length. */
static inline int32_t postern_config(char *buf, size_t cap) {
	return postern__nul(postern_config_get(buf, postern__lim(cap)), buf, cap);
}

/* postern_field copies value number index of a context field (ABI.md 3.2: "client.ip", "rcpt", ...) into buf and
 * returns its full length, POSTERN_ERR_NOT_FOUND past the last value or for an unknown name, or
 * POSTERN_ERR_UNAVAILABLE when the field is not known at this hook or in this protocol (see POSTERN_FIELD_*). */
static inline int32_t postern_field(const char *name, uint32_t index, char *buf, size_t cap) {
	return postern__nul(postern_field_get(postern__str(name), postern__len(name), index, buf, postern__lim(cap)),
			    buf, cap);
}

/* postern_header copies the index-th field called name (case-insensitive) of part's header into buf, unfolded and
 * trimmed (RFC 2047-decoded with POSTERN_HEADER_DECODED), and returns its full length or POSTERN_ERR_NOT_FOUND. */
static inline int32_t postern_header(int32_t part, const char *name, uint32_t index, uint32_t flags, char *buf,
				     size_t cap) {
	return postern__nul(postern_header_get(part, postern__str(name), postern__len(name), index, flags, buf,
					       postern__lim(cap)),
			    buf, cap);
}

/* postern_header_count counts the fields called name in part's header, stopping at max (so a hostile header
 * with thousands of copies costs at most max host calls). Negative: an error other than "not found". */
static inline int32_t postern_header_count(int32_t part, const char *name, uint32_t max) {
	uint32_t i;
	for (i = 0; i < max; i++) {
		int32_t n = postern_header_get(part, postern__str(name), postern__len(name), i, 0, 0, 0);
		if (n == POSTERN_ERR_NOT_FOUND)
			break;
		if (n < 0)
			return n;
	}
	return (int32_t)i;
}

/* postern_part_attr copies one attribute of a part (ABI.md 3.3: "content_type", "filename", "size", ...) into buf
 * and returns its full length, POSTERN_ERR_INVALID for a bad part id or POSTERN_ERR_NOT_FOUND for an unknown
 * attribute. */
static inline int32_t postern_part_attr(int32_t part, const char *name, char *buf, size_t cap) {
	return postern__nul(postern_part_field(part, postern__str(name), postern__len(name), buf, postern__lim(cap)),
			    buf, cap);
}

/* postern_part_filename copies the index-th (from 0) candidate file name of part into buf as a C string and
 * returns its length: the host lists every name a mail client may give the file (ABI.md 3.3 "filenames",
 * "filename" first), and a check on names must check each, so loop until POSTERN_ERR_NOT_FOUND. buf is also the
 * scratch space for the whole list: when the list does not fit in cap bytes the result is POSTERN_ERR_INVALID
 * (4096 bytes hold any list of ordinary names). On a host without "filenames", index 0 is "filename". */
static inline int32_t postern_part_filename(int32_t part, uint32_t index, char *buf, size_t cap) {
	int32_t n = postern_part_field(part, "filenames", 9, buf, postern__lim(cap));
	uint32_t line = 0;
	int32_t i, start = 0;
	if (n == POSTERN_ERR_NOT_FOUND) {
		if (index != 0)
			return POSTERN_ERR_NOT_FOUND;
		n = postern_part_attr(part, "filename", buf, cap);
		return n == 0 ? POSTERN_ERR_NOT_FOUND : n;
	}
	if (n < 0)
		return n;
	if (n == 0) {
		if (cap > 0)
			buf[0] = 0;
		return POSTERN_ERR_NOT_FOUND;
	}
	if ((size_t)n >= cap) {
		if (cap > 0)
			buf[0] = 0;
		return POSTERN_ERR_INVALID;
	}
	for (i = 0; i <= n; i++) {
		if (i < n && buf[i] != '\n')
			continue;
		if (line == index) {
			int32_t len = i - start, k;
			for (k = 0; k < len; k++)
				buf[k] = buf[start + k];
			buf[len] = 0;
			return len;
		}
		line++;
		start = i + 1;
	}
	buf[0] = 0;
	return POSTERN_ERR_NOT_FOUND;
}

/* postern_part_attr_int reads a numeric part attribute ("size", "depth", "parent", "multipart") into *out.
 * Returns 0, a POSTERN_ERR_* code, or POSTERN_ERR_INVALID when the value is not a decimal integer. */
static inline int32_t postern_part_attr_int(int32_t part, const char *name, int64_t *out) {
	char buf[24];
	int32_t n = postern_part_attr(part, name, buf, sizeof buf);
	int64_t v = 0;
	int neg = 0;
	int32_t i = 0;
	if (n < 0)
		return n;
	if (n == 0 || (size_t)n >= sizeof buf)
		return POSTERN_ERR_INVALID;
	if (buf[0] == '-') {
		neg = 1;
		i = 1;
	}
	if (i == n)
		return POSTERN_ERR_INVALID;
	for (; i < n; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return POSTERN_ERR_INVALID;
		v = v * 10 + (buf[i] - '0');
	}
	*out = neg ? -v : v;
	return 0;
}

/* postern_patterns compiles a pattern set (RE2 syntax, one pattern per '\n'-separated line) and returns its
 * handle, or POSTERN_ERR_INVALID (the host logs which pattern is bad). Call it from POSTERN_INIT. */
static inline int32_t postern_patterns(const char *patterns) {
	return postern_patterns_compile(postern__str(patterns), postern__len(patterns));
}

/* postern_tag adds (or replaces) the tag key = value. */
static inline int32_t postern_tag(const char *key, const char *value) {
	return postern_tag_add(postern__str(key), postern__len(key), postern__str(value), postern__len(value));
}

/* postern_tag_int adds the tag key = the decimal form of value. */
static inline int32_t postern_tag_int(const char *key, int64_t value) {
	char buf[24];
	char *p = buf + sizeof buf;
	/* Work on the negative value so that INT64_MIN needs no special case. */
	int64_t v = value < 0 ? value : -value;
	do {
		*--p = (char)('0' - (v % 10));
		v /= 10;
	} while (v != 0);
	if (value < 0)
		*--p = '-';
	return postern_tag_add(postern__str(key), postern__len(key), p, (uint32_t)(buf + sizeof buf - p));
}

/* postern_score adds delta (finite) to the call's score. */
static inline int32_t postern_score(double delta) { return postern_score_add(delta); }

/* Logging a C string, recorded under the plugin's name. */
static inline int32_t postern_logs(uint32_t level, const char *text) {
	return postern_log(level, postern__str(text), postern__len(text));
}
static inline int32_t postern_debug(const char *text) { return postern_logs(POSTERN_LOG_DEBUG, text); }
static inline int32_t postern_info(const char *text) { return postern_logs(POSTERN_LOG_INFO, text); }
static inline int32_t postern_warn(const char *text) { return postern_logs(POSTERN_LOG_WARN, text); }
static inline int32_t postern_error(const char *text) { return postern_logs(POSTERN_LOG_ERROR, text); }

/* Verdicts. A later verdict replaces an earlier one; returning 0 without one means accept. code 0 and enh NULL or
 * "" take the defaults (550 5.7.1, 451 4.7.1). text: at most 512 bytes, no CR or LF. */
static inline int32_t postern_accept(void) { return postern_set_verdict(POSTERN_ACCEPT, 0, "", 0, "", 0); }
static inline int32_t postern_reject(uint32_t code, const char *enh, const char *text) {
	return postern_set_verdict(POSTERN_REJECT, code, postern__str(enh), postern__len(enh), postern__str(text),
				   postern__len(text));
}
static inline int32_t postern_tempfail(uint32_t code, const char *enh, const char *text) {
	return postern_set_verdict(POSTERN_TEMPFAIL, code, postern__str(enh), postern__len(enh), postern__str(text),
				   postern__len(text));
}
static inline int32_t postern_discard(void) { return postern_set_verdict(POSTERN_DISCARD, 0, "", 0, "", 0); }
static inline int32_t postern_quarantine(const char *reason) {
	return postern_set_verdict(POSTERN_QUARANTINE, 0, "", 0, postern__str(reason), postern__len(reason));
}

/* Changes (message hook). Each returns 0, POSTERN_ERR_INVALID (nothing recorded: bad name, CR/LF/NUL in a value)
 * or POSTERN_ERR_UNAVAILABLE. */
static inline int32_t postern_add_header(const char *name, const char *value) {
	return postern_header_add(postern__str(name), postern__len(name), postern__str(value), postern__len(value));
}
static inline int32_t postern_set_header(const char *name, const char *value) {
	return postern_header_set(postern__str(name), postern__len(name), postern__str(value), postern__len(value));
}
static inline int32_t postern_remove_header(const char *name) {
	return postern_header_remove(postern__str(name), postern__len(name));
}
static inline int32_t postern_prefix_subject(const char *prefix) {
	return postern_subject_prefix(postern__str(prefix), postern__len(prefix));
}
/* POSTERN_ERR_DECODE (nothing recorded): a body part the banner goes to cannot be decoded to be extended; call
 * again with only the other half to add that one. */
static inline int32_t postern_add_banner(const char *text, const char *html) {
	return postern_banner_add(postern__str(text), postern__len(text), postern__str(html), postern__len(html));
}
static inline int32_t postern_replace_part(int32_t part, const char *content_type, const void *data, size_t len) {
	return postern_part_replace(part, postern__str(content_type), postern__len(content_type), data,
				    (uint32_t)len);
}
static inline int32_t postern_add_rcpt(const char *addr) { return postern_rcpt_add(postern__str(addr), postern__len(addr)); }

#ifdef __cplusplus
}
#endif

#endif /* POSTERN_H */
