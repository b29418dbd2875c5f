/*
 * token_form.t.c: login bodies (token-fcgi/form.c): urlencoded decoding
 * (percent escapes, '+', bad escapes, invalid UTF-8, NUL) and credentials
 * from JSON and forms, with their length and type rules.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "token.h"

#define FORM	"application/x-www-form-urlencoded"
#define JSON	"application/json"

/* Collect "name=value|" for every pair. */
struct collect {
	char	buf[512];
};

static int
collect_cb(void *arg, const char *name, const char *value, size_t vlen)
{
	struct collect	*c = arg;
	size_t		 n = strlen(c->buf);

	if (strlen(value) != vlen)
		return 7;	/* lengths must agree */
	snprintf(c->buf + n, sizeof(c->buf) - n, "%s=%s|", name, value);
	return 0;
}

struct pcase {
	const char	*name;
	const char	*body;
	int		 ok;
	const char	*want;	/* collected pairs when ok */
};

static const struct pcase pcases[] = {
	{ "two pairs", "a=1&b=2", 1, "a=1|b=2|" },
	{ "plus is a space", "a=x+y", 1, "a=x y|" },
	{ "percent escapes", "a=%41%62%2B%26%3D", 1, "a=Ab+&=|" },
	{ "lower-case hex", "a=%c3%a9", 1, "a=\xc3\xa9|" },
	{ "escaped name", "us%65r=x", 1, "user=x|" },
	{ "empty pairs skipped", "&a=1&&b=2&", 1, "a=1|b=2|" },
	{ "pair without =", "flag&a=1", 1, "flag=|a=1|" },
	{ "empty value", "a=", 1, "a=|" },
	{ "= in value", "a=b=c", 1, "a=b=c|" },
	{ "empty body", "", 1, "" },
	{ "truncated escape", "a=%4", 0, NULL },
	{ "escape at the end", "a=%", 0, NULL },
	{ "bad hex digit", "a=%4G", 0, NULL },
	{ "escaped NUL", "a=x%00y", 0, NULL },
	{ "invalid UTF-8 (escaped)", "a=%C3%28", 0, NULL },
	{ "invalid UTF-8 (raw)", "a=\xff", 0, NULL },
	{ "overlong UTF-8", "a=%C0%AF", 0, NULL },
	{ "UTF-16 surrogate", "a=%ED%A0%80", 0, NULL },
	{ "bad escape in a name", "%ZZ=1", 0, NULL },
};

static void
test_parse(void)
{
	struct collect	 c;
	const char	*reason;
	size_t		 i;
	int		 r;

	for (i = 0; i < sizeof(pcases) / sizeof(pcases[0]); i++) {
		const struct pcase *p = &pcases[i];

		memset(&c, 0, sizeof(c));
		reason = NULL;
		r = form_parse(p->body, strlen(p->body), collect_cb, &c, &reason);
		if (p->ok) {
			is_int(r, 0, p->name);
			is_str(c.buf, p->want, "  pairs");
		} else {
			ok(r == -1 && reason != NULL, "%s: refused (%s)", p->name,
			    reason ? reason : "no reason");
		}
	}
	/* The callback's own result stops the walk and comes back. */
	memset(&c, 0, sizeof(c));
	is_int(form_parse("a=1", 3, collect_cb, &c, &reason), 0, "callback ok");
}

struct ccase {
	const char	*name;
	const char	*ctype;
	const char	*body;
	int		 ok;
	const char	*user, *pass;
};

static const struct ccase ccases[] = {
	{ "JSON", JSON, "{\"username\":\"alice\",\"password\":\"pw\"}", 1,
	  "alice", "pw" },
	{ "JSON with charset", "application/json; charset=utf-8",
	  "{\"username\":\"alice\",\"password\":\"pw\"}", 1, "alice", "pw" },
	{ "JSON media type in capitals", "Application/JSON",
	  "{\"username\":\"a\",\"password\":\"p\"}", 1, "a", "p" },
	{ "JSON unknown members ignored", JSON,
	  "{\"username\":\"a\",\"password\":\"p\",\"remember\":true}", 1, "a", "p" },
	{ "JSON escapes", JSON,
	  "{\"username\":\"\\u00e9\",\"password\":\"a\\\"b\"}", 1, "\xc3\xa9",
	  "a\"b" },
	{ "JSON SQL metacharacters kept", JSON,
	  "{\"username\":\"x'; DROP TABLE users;--\",\"password\":\"p\"}", 1,
	  "x'; DROP TABLE users;--", "p" },
	{ "JSON missing password", JSON, "{\"username\":\"a\"}", 0, NULL, NULL },
	{ "JSON number password", JSON, "{\"username\":\"a\",\"password\":1}",
	  0, NULL, NULL },
	{ "JSON duplicate member", JSON,
	  "{\"username\":\"a\",\"username\":\"b\",\"password\":\"p\"}", 0,
	  NULL, NULL },
	{ "JSON empty username", JSON, "{\"username\":\"\",\"password\":\"p\"}",
	  0, NULL, NULL },
	{ "JSON \\u0000", JSON, "{\"username\":\"a\\u0000b\",\"password\":\"p\"}",
	  0, NULL, NULL },
	{ "JSON invalid UTF-8", JSON,
	  "{\"username\":\"\xc3\x28\",\"password\":\"p\"}", 0, NULL, NULL },
	{ "JSON array", JSON, "[\"a\",\"p\"]", 0, NULL, NULL },
	{ "JSON trailing junk", JSON,
	  "{\"username\":\"a\",\"password\":\"p\"}x", 0, NULL, NULL },
	{ "JSON empty body", JSON, "", 0, NULL, NULL },
	{ "form", FORM, "username=alice&password=p%40ss+word", 1, "alice",
	  "p@ss word" },
	{ "form with charset", FORM "; charset=UTF-8", "username=a&password=b",
	  1, "a", "b" },
	{ "form other fields ignored", FORM, "x=1&username=a&password=b&y=2",
	  1, "a", "b" },
	{ "form repeated username", FORM, "username=a&username=a&password=b",
	  0, NULL, NULL },
	{ "form missing password", FORM, "username=a", 0, NULL, NULL },
	{ "form empty password", FORM, "username=a&password=", 0, NULL, NULL },
	{ "form bad escape", FORM, "username=a%2&password=b", 0, NULL, NULL },
	{ "form invalid UTF-8", FORM, "username=%FF&password=b", 0, NULL, NULL },
	{ "no Content-Type", NULL, "username=a&password=b", 0, NULL, NULL },
	{ "text/plain", "text/plain", "username=a&password=b", 0, NULL, NULL },
	{ "prefix of a media type", "application/jsonx",
	  "{\"username\":\"a\",\"password\":\"p\"}", 0, NULL, NULL },
};

static void
test_credentials(void)
{
	struct credentials	 cred;
	const char		*reason;
	size_t			 i;
	int			 r;

	for (i = 0; i < sizeof(ccases) / sizeof(ccases[0]); i++) {
		const struct ccase *c = &ccases[i];

		reason = NULL;
		r = form_credentials(c->ctype, c->body, strlen(c->body), &cred,
		    &reason);
		if (c->ok) {
			is_int(r, 0, c->name);
			is_str(cred.username, c->user, "  username");
			is_str(cred.password, c->pass, "  password");
		} else {
			ok(r == -1 && reason != NULL && cred.username == NULL &&
			    cred.password == NULL, "%s: 400 (%s)", c->name,
			    reason ? reason : "no reason");
		}
		form_credentials_clear(&cred);
	}
}

static void
test_lengths(void)
{
	struct credentials	 cred;
	const char		*reason;
	char			 body[2200], user[80], pass[1100];

	memset(user, 'u', 64);
	user[64] = '\0';
	memset(pass, 'p', 1024);
	pass[1024] = '\0';
	snprintf(body, sizeof(body), "username=%s&password=%s", user, pass);
	is_int(form_credentials(FORM, body, strlen(body), &cred, &reason), 0,
	    "64-byte username and 1024-byte password accepted");
	is_int((int64_t)cred.ulen, 64, "  username length");
	is_int((int64_t)cred.plen, 1024, "  password length");
	form_credentials_clear(&cred);

	user[64] = 'u';
	user[65] = '\0';
	snprintf(body, sizeof(body), "username=%s&password=x", user);
	is_int(form_credentials(FORM, body, strlen(body), &cred, &reason), -1,
	    "65-byte username refused");
	user[64] = '\0';
	pass[1024] = 'p';
	pass[1025] = '\0';
	snprintf(body, sizeof(body), "{\"username\":\"%s\",\"password\":\"%s\"}",
	    user, pass);
	is_int(form_credentials(JSON, body, strlen(body), &cred, &reason), -1,
	    "1025-byte password refused");
	/* 16 two-byte characters = 32 bytes: lengths are bytes. */
	snprintf(body, sizeof(body), "username=%s&password=x",
	    "%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9"
	    "%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9");
	is_int(form_credentials(FORM, body, strlen(body), &cred, &reason), 0,
	    "UTF-8 username counted in bytes");
	is_int((int64_t)cred.ulen, 32, "  32 bytes");
	form_credentials_clear(&cred);
}

static void
test_types(void)
{
	ok(form_is_type("application/json", "application/json"), "type: exact");
	ok(form_is_type(" application/json ; charset=utf-8", "application/json"),
	    "type: spaces and parameters");
	ok(!form_is_type("application/json-seq", "application/json"),
	    "type: longer type is different");
	ok(!form_is_type(NULL, "application/json"), "type: absent");
}

int
main(void)
{
	test_parse();
	test_credentials();
	test_lengths();
	test_types();
	done_testing();
	return exit_status();
}
