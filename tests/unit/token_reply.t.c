/*
 * token_reply.t.c: what leaves the service (token-fcgi/reply.c), byte for
 * byte: status lines, the headers every answer carries, JSON bodies, the
 * session cookie, HEAD and 204 without bodies.
 */
#include "config.h"

#include <string.h>

#include "log.h"
#include "tap.h"
#include "token_fake.h"

static void
setup(struct fake *f, struct request *req, const char *method)
{
	static char	m[32];

	memset(f, 0, sizeof(*f));
	snprintf(m, sizeof(m), "REQUEST_METHOD=%s", method);
	f->vars[0] = m;
	request_init(req, &fake_io, f);
}

static void
test_errors(void)
{
	struct fake	f;
	struct request	req;

	setup(&f, &req, "GET");
	reply_error(&req, 404, "not_found", "no such resource");
	is_str(f.out,
	    "Status: 404 Not Found\r\n"
	    "X-Content-Type-Options: nosniff\r\n"
	    "Cache-Control: no-store\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: 50\r\n"
	    "\r\n"
	    "{\"error\":\"not_found\",\"message\":\"no such resource\"}",
	    "404 error, whole answer");
	is_int(req.status, 404, "status recorded");

	setup(&f, &req, "POST");
	reply_unavailable(&req);
	is_str(fake_body(&f), "{\"error\":\"unavailable\",\"message\":"
	    "\"the service is temporarily unavailable; try again shortly\"}",
	    "503 body");
	ok(strncmp(f.out, "Status: 503 Service Unavailable\r\n", 33) == 0,
	    "503 status line");
	ok(fake_has_header(&f, "Retry-After: 5"), "503 has Retry-After: 5");

	setup(&f, &req, "POST");
	reply_internal(&req);
	is_str(fake_body(&f), "{\"error\":\"internal\",\"message\":\"internal error\"}",
	    "500 body is generic");

	setup(&f, &req, "POST");
	reply_error(&req, 400, "bad_request", "a \"quoted\" \\ message\n");
	is_str(fake_body(&f), "{\"error\":\"bad_request\",\"message\":"
	    "\"a \\\"quoted\\\" \\\\ message\\n\"}", "message is JSON-escaped");
}

static void
test_json(void)
{
	struct fake	 f;
	struct request	 req;
	struct reply	 r;
	json_t		*o;

	setup(&f, &req, "GET");
	o = json_pack("{s:{s:I, s:s}, s:I}", "user", "id", (json_int_t)42,
	    "name", "Zo\xc3\xab", "session_expires_at", (json_int_t)1795000000);
	reply_init(&r, 200);
	reply_json(&req, &r, o);
	is_str(fake_body(&f),
	    "{\"user\":{\"id\":42,\"name\":\"Zo\xc3\xab\"},"
	    "\"session_expires_at\":1795000000}",
	    "session body: compact, ordered, UTF-8 as is");
	ok(fake_has_header(&f, "Content-Length: 64"),
	    "Content-Length counts bytes");

	setup(&f, &req, "HEAD");
	o = json_pack("{s:s}", "a", "b");
	reply_init(&r, 200);
	reply_json(&req, &r, o);
	is_str(fake_body(&f), "", "HEAD: no body");
	ok(fake_has_header(&f, "Content-Length: 9"),
	    "HEAD: Content-Length of the GET body");
}

static void
test_cookie(void)
{
	struct fake	f;
	struct request	req;
	struct reply	r;
	struct conf	c;

	memset(&c, 0, sizeof(c));
	c.cookie_name = "parley_session";
	c.cookie_secure = 1;

	setup(&f, &req, "POST");
	reply_init(&r, 204);
	reply_set_cookie(&r, &c, NULL, 0);
	reply_send(&req, &r, "application/json", "ignored", 7);
	is_str(f.out,
	    "Status: 204 No Content\r\n"
	    "X-Content-Type-Options: nosniff\r\n"
	    "Cache-Control: no-store\r\n"
	    "Set-Cookie: parley_session=; Path=/; HttpOnly; SameSite=Lax; "
	    "Max-Age=0; Secure\r\n"
	    "\r\n",
	    "204 logout: cookie cleared, no Content-Type, no body");

	setup(&f, &req, "POST");
	reply_init(&r, 200);
	c.cookie_secure = 0;
	reply_set_cookie(&r, &c, "abc", 604800);
	reply_send(&req, &r, "application/json", "{}", 2);
	ok(fake_has_header(&f, "Set-Cookie: parley_session=abc; Path=/; "
	    "HttpOnly; SameSite=Lax; Max-Age=604800"),
	    "login cookie without Secure when cookie_secure=0");
}

static void
test_headers(void)
{
	struct fake	f;
	struct request	req;
	struct reply	r;
	char		big[2000];

	setup(&f, &req, "GET");
	reply_init(&r, 200);
	r.cache_control = "public, max-age=300";
	reply_send(&req, &r, "application/json", "{}", 2);
	ok(fake_has_header(&f, "Cache-Control: public, max-age=300"),
	    "Cache-Control can be set");
	ok(strstr(f.out, "no-store") == NULL, "  and replaces no-store");

	setup(&f, &req, "GET");
	reply_init(&r, 429);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	reply_header(&r, "X-Big", "%s", big);
	reply_send(&req, &r, "application/json", "{}", 2);
	ok(strncmp(f.out, "Status: 500 ", 12) == 0,
	    "headers that do not fit: 500, not a truncated answer");

	is_str(reply_reason(413), "Content Too Large", "reason 413");
	is_str(reply_reason(299), "Unknown", "reason of an odd status");
}

int
main(void)
{
	log_init("token_reply.t", LOG_LEVEL_ERROR);
	test_errors();
	test_json();
	test_cookie();
	test_headers();
	done_testing();
	return exit_status();
}
