/*
 * token_cookie.t.c: reading the session cookie out of Cookie headers
 * (token-fcgi/cookie.c): a table of headers a browser, a proxy or an
 * attacker may send, and what the service must make of each.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "token.h"

#define NAME	"parley_session"
/* base64url of 32 bytes 0x00..0x1f */
#define GOOD	"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"

struct ccase {
	const char		*name;
	const char		*header;
	enum cookie_result	 want;
	const char		*value;	/* expected value when FOUND */
};

static const struct ccase cases[] = {
	{ "no header", NULL, COOKIE_ABSENT, NULL },
	{ "empty header", "", COOKIE_ABSENT, NULL },
	{ "only other cookies", "a=1; b=2", COOKIE_ABSENT, NULL },
	{ "alone", NAME "=abc", COOKIE_FOUND, "abc" },
	{ "among others", "a=1; " NAME "=abc; b=2", COOKIE_FOUND, "abc" },
	{ "no space after ;", "a=1;" NAME "=abc;b=2", COOKIE_FOUND, "abc" },
	{ "spaces and tabs around", " \t" NAME " = abc \t; b=2", COOKIE_FOUND,
	  "abc" },
	{ "comma-joined headers", "a=1, " NAME "=abc", COOKIE_FOUND, "abc" },
	{ "quoted value", NAME "=\"abc\"", COOKIE_FOUND, "abc" },
	{ "name is case-sensitive", "Parley_Session=abc", COOKIE_ABSENT, NULL },
	{ "longer name not matched", NAME "2=abc; x" NAME "=def",
	  COOKIE_ABSENT, NULL },
	{ "repeated, same value", NAME "=abc; " NAME "=abc", COOKIE_FOUND,
	  "abc" },
	{ "repeated, different values", NAME "=abc; " NAME "=abd",
	  COOKIE_INVALID, NULL },
	{ "repeated across joined headers", NAME "=abc, " NAME "=xyz",
	  COOKIE_INVALID, NULL },
	{ "empty value", NAME "=", COOKIE_INVALID, NULL },
	{ "empty quoted value", NAME "=\"\"", COOKIE_INVALID, NULL },
	{ "space inside value", NAME "=ab c", COOKIE_INVALID, NULL },
	{ "backslash in value", NAME "=ab\\c", COOKIE_INVALID, NULL },
	{ "lone quote", NAME "=\"abc", COOKIE_INVALID, NULL },
	{ "non-ASCII in value", NAME "=ab\xc3\xa9", COOKIE_INVALID, NULL },
	{ "control byte in value", NAME "=ab\x01", COOKIE_INVALID, NULL },
	{ "non-ASCII elsewhere is ignored", "x=\xc3\xa9t\xc3\xa9; " NAME "=abc",
	  COOKIE_FOUND, "abc" },
	{ "pair without = ignored", "junk; " NAME "=abc", COOKIE_FOUND, "abc" },
	{ "= inside value kept", NAME "=a=b", COOKIE_FOUND, "a=b" },
};

static void
test_table(void)
{
	char	value[COOKIE_MAX_VALUE + 1];
	size_t	i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ccase *c = &cases[i];
		enum cookie_result r;

		r = cookie_find(c->header, NAME, value, sizeof(value));
		is_int(r, c->want, c->name);
		if (c->want == COOKIE_FOUND)
			is_str(value, c->value, "  value");
	}
}

static void
test_sizes(void)
{
	char	*big, value[COOKIE_MAX_VALUE + 1];
	size_t	 n;

	/* A value one byte over the cap. */
	n = strlen(NAME) + 1 + COOKIE_MAX_VALUE + 1;
	big = malloc(n + 1);
	memcpy(big, NAME "=", strlen(NAME) + 1);
	memset(big + strlen(NAME) + 1, 'a', COOKIE_MAX_VALUE + 1);
	big[n] = '\0';
	is_int(cookie_find(big, NAME, value, sizeof(value)), COOKIE_INVALID,
	    "value over the cap is invalid");
	big[n - 1] = '\0';
	is_int(cookie_find(big, NAME, value, sizeof(value)), COOKIE_FOUND,
	    "value at the cap is accepted");
	free(big);

	/* A header over the cap, even with our cookie first. */
	n = COOKIE_MAX_HEADER + 1;
	big = malloc(n + 1);
	memset(big, 'x', n);
	memcpy(big, NAME "=abc; y=", strlen(NAME "=abc; y="));
	big[n] = '\0';
	is_int(cookie_find(big, NAME, value, sizeof(value)), COOKIE_INVALID,
	    "header over 16 KiB is invalid");
	big[COOKIE_MAX_HEADER] = '\0';
	is_int(cookie_find(big, NAME, value, sizeof(value)), COOKIE_FOUND,
	    "header of exactly 16 KiB is read");
	free(big);

	/* A small output buffer is not overrun. */
	is_int(cookie_find(NAME "=abcdef", NAME, value, 4), COOKIE_INVALID,
	    "value longer than the caller's buffer is invalid");
}

static void
test_hash(void)
{
	unsigned char	h[UTIL_SHA256_LEN], want[UTIL_SHA256_LEN];

	/* The database stores SHA-256 of the value text (parley.token_hash). */
	util_sha256(GOOD, strlen(GOOD), want);
	is_int(cookie_hash("a=1; " NAME "=" GOOD, NAME, h), COOKIE_FOUND,
	    "hash: our cookie is found");
	ok(memcmp(h, want, sizeof(h)) == 0,
	    "hash: SHA-256 of the value as sent, not of its decoding");
	memset(h, 0, sizeof(h));
	is_int(cookie_hash(NAME "=\"" GOOD "\"", NAME, h), COOKIE_FOUND,
	    "hash: quoted form is found");
	ok(memcmp(h, want, sizeof(h)) == 0, "hash: quotes are not hashed");
	util_sha256("app-session-42", 14, want);
	is_int(cookie_hash(NAME "=app-session-42", NAME, h), COOKIE_FOUND,
	    "hash: an application's own cookie format is hashed too");
	ok(memcmp(h, want, sizeof(h)) == 0, "hash: of exactly that text");
	is_int(cookie_hash(NAME "=a b", NAME, h), COOKIE_INVALID,
	    "hash: a space inside the value is invalid");
	is_int(cookie_hash(NAME "=\xc3\xa9", NAME, h), COOKIE_INVALID,
	    "hash: non-ASCII value is invalid");
	is_int(cookie_hash("x=1", NAME, h), COOKIE_ABSENT,
	    "hash: absent cookie is absent");
	is_int(cookie_hash(NULL, NAME, h), COOKIE_ABSENT,
	    "hash: no header is absent");
}

static void
test_names(void)
{
	ok(cookie_name_ok("parley_session"), "name: default is valid");
	ok(cookie_name_ok("__Host-parley"), "name: __Host- prefix is valid");
	ok(!cookie_name_ok(""), "name: empty is refused");
	ok(!cookie_name_ok("a b"), "name: space is refused");
	ok(!cookie_name_ok("a=b"), "name: '=' is refused");
	ok(!cookie_name_ok("a;b"), "name: ';' is refused");
	ok(!cookie_name_ok("s\xc3\xa9"), "name: non-ASCII is refused");
	ok(!cookie_name_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
	    "name: 65 bytes is refused");
}

int
main(void)
{
	test_table();
	test_sizes();
	test_hash();
	test_names();
	done_testing();
	return exit_status();
}
