/*
 * token_handler.t.c: whole requests through handler_dispatch with an
 * in-memory transport and no database: routing, 404/405/403, the cookie
 * and body checks that answer before any SQL, JWKS, and 503 when the
 * database cannot be reached.  The database paths proper are covered by the
 * end-to-end tests.
 */
#include "config.h"

#include <string.h>

#include "log.h"
#include "tap.h"
#include "token_fake.h"
#include "token_keys.h"

#define GOOD_COOKIE	"parley_session=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"

static struct conf	*hs_conf, *es_conf;
static struct db	 db_down;

/* Run one request; vars is a NULL-terminated list. */
static void
run(struct fake *f, struct conf *c, const char *const *vars, const char *body)
{
	struct request	req;
	size_t		i;

	memset(f, 0, sizeof(*f));
	for (i = 0; vars[i] != NULL && i < 31; i++)
		f->vars[i] = vars[i];
	f->body = body ? body : "";
	f->body_len = strlen(f->body);
	request_init(&req, &fake_io, f);
	req.conf = c;
	req.db = &db_down;
	handler_dispatch(&req);
}

static int
status_is(const struct fake *f, int status, const char *name)
{
	char	want[64];
	int	r;

	snprintf(want, sizeof(want), "Status: %d ", status);
	r = ok(strncmp(f->out, want, strlen(want)) == 0, "%s: %d", name, status);
	if (!r)
		diag("got: %.80s", f->out);
	return r;
}

static int
error_is(const struct fake *f, const char *code)
{
	char	want[64];

	snprintf(want, sizeof(want), "{\"error\":\"%s\",\"message\":", code);
	return ok(strncmp(fake_body(f), want, strlen(want)) == 0 &&
	    fake_has_header(f, "Content-Type: application/json") &&
	    fake_has_header(f, "X-Content-Type-Options: nosniff"),
	    "  error %s, JSON, nosniff", code);
}

static void
test_routing(void)
{
	struct fake	f;

	{ const char *v[] = { "REQUEST_METHOD=GET", "SCRIPT_NAME=/auth/nope", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 404, "unknown route");
	  error_is(&f, "not_found"); }
	{ const char *v[] = { "REQUEST_METHOD=GET", "SCRIPT_NAME=/auth", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 404, "the mount point itself"); }
	{ const char *v[] = { "REQUEST_METHOD=GET", "SCRIPT_NAME=/auth",
	    "PATH_INFO=/token", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 405, "GET token");
	  error_is(&f, "method_not_allowed");
	  ok(fake_has_header(&f, "Allow: POST"), "  Allow: POST"); }
	{ const char *v[] = { "REQUEST_METHOD=PUT", "SCRIPT_NAME=/x/login", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 405, "PUT login"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/x/session", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 405, "POST session");
	  ok(fake_has_header(&f, "Allow: GET, HEAD"), "  Allow: GET, HEAD"); }
	{ const char *v[] = { "REQUEST_METHOD=DELETE", "SCRIPT_NAME=/x/jwks.json", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 405, "DELETE jwks.json"); }
	{ const char *v[] = { "SCRIPT_NAME=/x/token", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 405, "no REQUEST_METHOD"); }
}

static void
test_origin(void)
{
	struct fake	f;

	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/auth/token",
	    "HTTP_ORIGIN=https://evil.example", "HTTP_HOST=chat.example",
	    "HTTP_COOKIE=" GOOD_COOKIE, NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 403, "token from a foreign Origin");
	  error_is(&f, "forbidden_origin"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/auth/login",
	    "HTTP_ORIGIN=null", "HTTP_HOST=chat.example",
	    "CONTENT_TYPE=application/json", "CONTENT_LENGTH=2", NULL };
	  run(&f, hs_conf, v, "{}");
	  status_is(&f, 403, "login from Origin null");
	  is_int((int64_t)f.body_pos, 0, "  body not read"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/auth/logout",
	    "HTTP_ORIGIN=https://evil.example", "HTTP_HOST=chat.example", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 403, "logout from a foreign Origin"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/auth/token",
	    "HTTP_ORIGIN=https://chat.example", "HTTP_HOST=chat.example",
	    "HTTPS=on", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 401, "same-host Origin passes (then no cookie)"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/auth/token",
	    "HTTP_ORIGIN=https://chat.example", "HTTP_HOST=chat.example",
	    "REQUEST_SCHEME=http", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 403, "same host, https Origin, request over http"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/auth/token",
	    "HTTP_ORIGIN=http://chat.example/", "HTTP_HOST=chat.example", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 403, "same host, Origin with a trailing slash"); }
	{ const char *v[] = { "REQUEST_METHOD=GET", "SCRIPT_NAME=/auth/session",
	    "HTTP_ORIGIN=https://evil.example", "HTTP_HOST=chat.example", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 401, "GET routes are not Origin-checked"); }
}

static void
test_sessions(void)
{
	struct fake	f;

	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/token", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 401, "token without a cookie");
	  error_is(&f, "invalid_session"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/token",
	    "HTTP_COOKIE=parley_session=bad\\value", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 401, "token with a malformed cookie"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/token",
	    "HTTP_COOKIE=" GOOD_COOKIE "; parley_session=AAAA", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 401, "token with two different session cookies"); }
	{ const char *v[] = { "REQUEST_METHOD=GET", "SCRIPT_NAME=/a/session", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 401, "session without a cookie");
	  error_is(&f, "invalid_session"); }
	{ const char *v[] = { "REQUEST_METHOD=HEAD", "SCRIPT_NAME=/a/session", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 401, "HEAD session");
	  is_str(fake_body(&f), "", "  without a body"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/logout", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 401, "logout without a cookie");
	  ok(strstr(f.out, "Set-Cookie") == NULL, "  no Set-Cookie"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/logout",
	    "HTTP_COOKIE=parley_session=bad\\value", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 401, "logout with a malformed cookie");
	  ok(fake_has_header(&f, "Set-Cookie: parley_session=; Path=/; HttpOnly; "
	      "SameSite=Lax; Max-Age=0; Secure"), "  which is cleared"); }
}

static void
test_login_input(void)
{
	struct fake	f;

	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/login",
	    "CONTENT_TYPE=application/json", "CONTENT_LENGTH=16385", NULL };
	  run(&f, hs_conf, v, "{\"username\":\"a\"}");
	  status_is(&f, 413, "login body over max_body");
	  error_is(&f, "too_large");
	  is_int((int64_t)f.body_pos, 0, "  body not read"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/login",
	    "CONTENT_TYPE=application/json", "CONTENT_LENGTH=abc", NULL };
	  run(&f, hs_conf, v, "{}");
	  status_is(&f, 413, "invalid CONTENT_LENGTH"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/login",
	    "CONTENT_TYPE=application/json", "CONTENT_LENGTH=50", NULL };
	  run(&f, hs_conf, v, "{\"username\":\"a\"}");
	  status_is(&f, 400, "body shorter than CONTENT_LENGTH");
	  error_is(&f, "bad_request"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/login",
	    "CONTENT_TYPE=application/json", NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 400, "login without a body"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/login",
	    "CONTENT_TYPE=application/json", "CONTENT_LENGTH=9", NULL };
	  run(&f, hs_conf, v, "{\"a\":1,,}");
	  status_is(&f, 400, "malformed JSON"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/login",
	    "CONTENT_TYPE=text/plain", "CONTENT_LENGTH=21", NULL };
	  run(&f, hs_conf, v, "username=a&password=b");
	  status_is(&f, 400, "text/plain body"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/login",
	    "CONTENT_TYPE=application/x-www-form-urlencoded",
	    "CONTENT_LENGTH=23", NULL };
	  run(&f, hs_conf, v, "username=%FF&password=b");
	  status_is(&f, 400, "form with invalid UTF-8"); }
}

static void
test_database_down(void)
{
	struct fake	f;

	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/token",
	    "HTTP_COOKIE=" GOOD_COOKIE, NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 503, "token with the database down");
	  error_is(&f, "unavailable");
	  ok(fake_has_header(&f, "Retry-After: 5"), "  Retry-After: 5");
	  ok(strstr(f.out, "127.0.0.1") == NULL && strstr(f.out, "refused") == NULL,
	      "  no database text in the answer"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/login",
	    "CONTENT_TYPE=application/json", "CONTENT_LENGTH=31", NULL };
	  run(&f, hs_conf, v, "{\"username\":\"a\",\"password\":\"b\"}");
	  status_is(&f, 503, "login with the database down");
	  ok(strstr(f.out, "Set-Cookie") == NULL, "  no cookie"); }
	{ const char *v[] = { "REQUEST_METHOD=GET", "SCRIPT_NAME=/a/session",
	    "HTTP_COOKIE=" GOOD_COOKIE, NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 503, "session with the database down"); }
	{ const char *v[] = { "REQUEST_METHOD=POST", "SCRIPT_NAME=/a/logout",
	    "HTTP_COOKIE=" GOOD_COOKIE, NULL };
	  run(&f, hs_conf, v, NULL);
	  status_is(&f, 503, "logout with the database down"); }
}

static void
test_jwks(void)
{
	struct fake	 f;
	const char	*v[] = { "REQUEST_METHOD=GET", "SCRIPT_NAME=/a/jwks.json", NULL };
	json_t		*set, *keys, *k;
	const char	*body;

	run(&f, hs_conf, v, NULL);
	status_is(&f, 404, "jwks.json with HS256");
	error_is(&f, "not_found");

	run(&f, es_conf, v, NULL);
	status_is(&f, 200, "jwks.json with ES256");
	ok(fake_has_header(&f, "Cache-Control: public, max-age=300"),
	    "  cacheable for 5 minutes");
	body = fake_body(&f);
	set = json_loads(body, 0, NULL);
	keys = json_object_get(set, "keys");
	k = json_array_get(keys, 0);
	ok(json_array_size(keys) == 1 &&
	    strcmp(json_string_value(json_object_get(k, "kty")), "EC") == 0 &&
	    strcmp(json_string_value(json_object_get(k, "crv")), "P-256") == 0 &&
	    json_object_get(k, "d") == NULL,
	    "  one public EC key, no private part");
	ok(json_is_string(json_object_get(k, "kid")) &&
	    strcmp(json_string_value(json_object_get(k, "kid")),
	    jwtkey_kid(es_conf->keys)) == 0, "  its kid is the signing kid");
	json_decref(set);
}

int
main(void)
{
	unsigned char	 secret[32];
	char		 err[512], set[200];
	const char	*s[] = { set, NULL };
	const char	*es[] = { set, "PARLEY_JWT_ALG=ES256", NULL };

	log_init("token_handler.t", LOG_LEVEL_ERROR);
	keys_setup();
	memset(secret, 0x33, sizeof(secret));
	snprintf(set, sizeof(set), "PARLEY_JWT_KEY_FILE=%s",
	    keys_write("hs.key", secret, sizeof(secret), 0600));
	hs_conf = keys_conf(err, sizeof(err), s);
	snprintf(set, sizeof(set), "PARLEY_JWT_KEY_FILE=%s", keys_es256("es.pem"));
	es_conf = keys_conf(err, sizeof(err), es);
	if (hs_conf == NULL || es_conf == NULL) {
		diag("configuration refused: %s", err);
		return 1;
	}
	/* Nothing listens on port 1: every query is DB_UNAVAILABLE. */
	db_init(&db_down, "host=127.0.0.1 port=1 connect_timeout=2",
	    "token_handler.t", store_stmts);

	test_routing();
	test_origin();
	test_sessions();
	test_login_input();
	test_database_down();
	test_jwks();

	db_destroy(&db_down);
	conf_release(hs_conf);
	conf_release(es_conf);
	keys_teardown();
	done_testing();
	return exit_status();
}
