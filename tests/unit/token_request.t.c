/*
 * token_request.t.c: the request side (token-fcgi/request.c): routing on
 * SCRIPT_NAME + PATH_INFO, CONTENT_LENGTH checks, and reading exactly the
 * declared body, never more and never an oversized one.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "token_fake.h"

struct rcase {
	const char	*script, *path;
	const char	*route;		/* "" = none */
};

static const struct rcase rcases[] = {
	{ "/auth/token", NULL, "token" },		/* nginx location /auth/ */
	{ "/auth/token", "", "token" },
	{ "/auth", "/token", "token" },			/* Apache ScriptAlias */
	{ "/cgi-bin/parley-token", "/login", "login" },
	{ "/a/b/c/session", NULL, "session" },		/* any prefix */
	{ "/jwks.json", NULL, "jwks.json" },
	{ "", "/logout", "logout" },
	{ "/auth", "/x/y/token", "token" },		/* last segment wins */
	{ "/auth/token/", NULL, "" },			/* trailing slash */
	{ "/auth", "/", "" },
	{ "/auth", NULL, "auth" },			/* not a route, 404 later */
	{ NULL, NULL, "" },
	{ "/a/lo", "gin", "login" },			/* segment straddles */
	{ "/auth/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL, "" }, /* too long */
};

static void
test_route(void)
{
	char	out[REQUEST_ROUTE_MAX];
	size_t	i;

	for (i = 0; i < sizeof(rcases) / sizeof(rcases[0]); i++) {
		const struct rcase *r = &rcases[i];
		char name[200];

		request_route(r->script, r->path, out, sizeof(out));
		snprintf(name, sizeof(name), "route of SCRIPT_NAME=%s PATH_INFO=%s",
		    r->script ? r->script : "(unset)", r->path ? r->path : "(unset)");
		is_str(out, r->route, name);
	}
}

static void
test_content_length(void)
{
	size_t	len;

	is_int(request_content_length(NULL, 100, &len), REQUEST_BODY_OK,
	    "CONTENT_LENGTH unset: no body (RFC 3875 4.1.2)");
	is_int((int64_t)len, 0, "  length 0");
	is_int(request_content_length("", 100, &len), REQUEST_BODY_OK,
	    "CONTENT_LENGTH empty: no body");
	is_int(request_content_length("0", 100, &len), REQUEST_BODY_OK, "0");
	is_int(request_content_length("100", 100, &len), REQUEST_BODY_OK,
	    "at the cap");
	is_int((int64_t)len, 100, "  length 100");
	is_int(request_content_length("101", 100, &len), REQUEST_BODY_TOO_LARGE,
	    "over the cap: 413");
	is_int(request_content_length("-1", 100, &len), REQUEST_BODY_TOO_LARGE,
	    "negative: 413");
	is_int(request_content_length("1e3", 100, &len), REQUEST_BODY_TOO_LARGE,
	    "not digits: 413");
	is_int(request_content_length(" 10", 100, &len), REQUEST_BODY_TOO_LARGE,
	    "leading space: 413");
	is_int(request_content_length("99999999999999999999999", SIZE_MAX, &len),
	    REQUEST_BODY_TOO_LARGE, "overflowing: 413");
	is_int(request_content_length("18446744073709551616", SIZE_MAX, &len),
	    REQUEST_BODY_TOO_LARGE, "2^64: 413");
}

static void
test_body(void)
{
	struct fake	 f;
	struct request	 req;
	char		*body;
	size_t		 len;

	memset(&f, 0, sizeof(f));
	f.vars[0] = "CONTENT_LENGTH=5";
	f.body = "helloEXTRA";
	f.body_len = 10;
	f.chunk = 2;
	request_init(&req, &fake_io, &f);
	is_int(request_read_body(&req, 100, &body, &len), REQUEST_BODY_OK,
	    "body read in small chunks");
	is_str(body, "hello", "  exactly CONTENT_LENGTH bytes, NUL-terminated");
	is_int((int64_t)f.body_pos, 5, "  nothing read past CONTENT_LENGTH");
	request_body_free(body, len);
	is_int(request_drain(&req, 100), 0, "drain consumes the rest");
	is_int((int64_t)f.body_pos, 10, "  all input consumed");

	memset(&f, 0, sizeof(f));
	f.vars[0] = "CONTENT_LENGTH=1000000";
	f.body = "x";
	f.body_len = 1;
	request_init(&req, &fake_io, &f);
	is_int(request_read_body(&req, 16384, &body, &len),
	    REQUEST_BODY_TOO_LARGE, "declared 1 MB over a 16 KiB cap: 413");
	ok(body == NULL, "  no buffer");
	is_int((int64_t)f.body_pos, 0, "  not a byte read");

	memset(&f, 0, sizeof(f));
	f.vars[0] = "CONTENT_LENGTH=10";
	f.body = "short";
	f.body_len = 5;
	request_init(&req, &fake_io, &f);
	is_int(request_read_body(&req, 100, &body, &len), REQUEST_BODY_BAD,
	    "body shorter than CONTENT_LENGTH: 400");
	ok(body == NULL, "  no buffer");

	memset(&f, 0, sizeof(f));
	f.vars[0] = "CONTENT_LENGTH=10";
	f.body = "short";
	f.body_len = 5;
	f.read_fails = 1;
	request_init(&req, &fake_io, &f);
	is_int(request_read_body(&req, 100, &body, &len), REQUEST_BODY_BAD,
	    "read error: 400");
	is_int(request_drain(&req, 100), -1, "drain reports the read error");

	memset(&f, 0, sizeof(f));
	f.body = "ignored";
	f.body_len = 7;
	request_init(&req, &fake_io, &f);
	is_int(request_read_body(&req, 100, &body, &len), REQUEST_BODY_OK,
	    "no CONTENT_LENGTH: empty body");
	is_int((int64_t)len, 0, "  length 0");
	is_int((int64_t)f.body_pos, 0, "  nothing read");
	request_body_free(body, len);

	memset(&f, 0, sizeof(f));
	f.body = "0123456789";
	f.body_len = 10;
	request_init(&req, &fake_io, &f);
	is_int(request_drain(&req, 4), -1, "drain gives up past its limit");
}

static void
test_init(void)
{
	struct fake	f;
	struct request	req;

	memset(&f, 0, sizeof(f));
	f.vars[0] = "REQUEST_METHOD=HEAD";
	f.vars[1] = "SCRIPT_NAME=/auth";
	f.vars[2] = "PATH_INFO=/session";
	f.vars[3] = "HTTP_COOKIE=a=1";
	f.vars[4] = "HTTP_ORIGIN=https://x";
	f.vars[5] = "HTTP_HOST=x";
	f.vars[6] = "REMOTE_ADDR=192.0.2.1";
	request_init(&req, &fake_io, &f);
	is_str(req.method, "HEAD", "method");
	ok(req.head, "HEAD flagged");
	is_str(req.route, "session", "route");
	is_str(req.cookie, "a=1", "cookie");
	is_str(req.origin, "https://x", "origin");
	is_str(req.host, "x", "host");
	is_str(req.remote_addr, "192.0.2.1", "remote address");
	ok(req.content_type == NULL, "absent variable is NULL");

	memset(&f, 0, sizeof(f));
	request_init(&req, &fake_io, &f);
	is_str(req.method, "", "no REQUEST_METHOD: empty method");
}

int
main(void)
{
	test_route();
	test_content_length();
	test_body();
	test_init();
	done_testing();
	return exit_status();
}
