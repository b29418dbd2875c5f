/*
 * token_conf.t.c: parley-token's settings (token-fcgi/conf.c): defaults,
 * parsed values, and every startup refusal the operator gets as one line
 * (missing, unreadable or shared key file, short secret, bad algorithm,
 * '*' origin, values out of range).
 */
#include "config.h"

#include <string.h>

#include "log.h"
#include "tap.h"
#include "token_keys.h"

static const char *hs_key;

static void
refused(const char *name, const char *want, const char *const *settings)
{
	struct conf	*c;
	char		 err[512] = "";

	c = keys_conf(err, sizeof(err), settings);
	ok(c == NULL && strstr(err, want) != NULL && strchr(err, '\n') == NULL,
	    "refused: %s (%s)", name, err);
	conf_release(c);
}

static void
test_defaults(void)
{
	const char	*s[] = { NULL, NULL };
	char		 err[512] = "", set[200];
	struct conf	*c;

	snprintf(set, sizeof(set), "PARLEY_JWT_KEY_FILE=%s", hs_key);
	s[0] = set;
	c = keys_conf(err, sizeof(err), s);
	if (!ok(c != NULL, "a key file is all it takes"))
		diag("%s", err);
	if (c == NULL)
		return;
	is_int(jwtkey_alg(c->keys), JWTKEY_HS256, "default alg HS256");
	is_int(c->token_ttl_s, 300, "token ttl 5m = 300 s");
	is_int(c->session_ttl_s, 7 * 86400, "session ttl 7d");
	is_str(c->cookie_name, "parley_session", "cookie name");
	is_int(c->cookie_secure, 1, "cookie Secure by default");
	is_int((int64_t)c->origins.n, 0, "no origins listed: same host");
	ok(c->relay_url == NULL, "no relay_url");
	is_int((int64_t)c->max_body, 16384, "max body 16k");
	is_int(c->threads, 16, "16 threads");
	is_int(c->socket_mode, 0660, "socket mode 0660");
	ok(c->listen == NULL, "listen unset");
	is_str(c->jwt.issuer, "parley", "issuer");
	is_str(c->jwt.audience, "parley-relay", "audience");
	is_str(c->db, "", "conninfo empty: libpq defaults");
	is_int(c->log_level, LOG_LEVEL_INFO, "log level info");
	conf_release(c);
}

static void
test_values(void)
{
	char		 err[512] = "", set[200];
	struct conf	*c;
	const char	*s[] = { set, "WS_TOKEN_TTL=90s", "PARLEY_SESSION_TTL=2h",
	    "PARLEY_COOKIE_SECURE=0", "PARLEY_COOKIE_NAME=__Host-chat",
	    "PARLEY_ALLOWED_ORIGINS=https://a.example, http://localhost:3000",
	    "PARLEY_RELAY_URL=wss://chat.example/ws", "PARLEY_THREADS=4",
	    "PARLEY_SOCKET_MODE=600", "PARLEY_MAX_BODY=1k",
	    "PARLEY_LISTEN=unix:/tmp/x.sock", "PARLEY_LOG_LEVEL=debug", NULL };

	snprintf(set, sizeof(set), "PARLEY_JWT_KEY_FILE=%s", hs_key);
	c = keys_conf(err, sizeof(err), s);
	if (!ok(c != NULL, "every setting accepted"))
		diag("%s", err);
	if (c == NULL)
		return;
	is_int(c->token_ttl_s, 90, "token ttl 90s");
	is_int(c->jwt.ttl_s, 90, "  minted with it");
	is_int(c->session_ttl_s, 7200, "session ttl 2h");
	is_int(c->cookie_secure, 0, "cookie_secure 0");
	is_str(c->cookie_name, "__Host-chat", "cookie name");
	is_int((int64_t)c->origins.n, 2, "two origins");
	is_str(c->relay_url, "wss://chat.example/ws", "relay url");
	is_int(c->threads, 4, "4 threads");
	is_int(c->socket_mode, 0600, "mode 600 is octal");
	is_int((int64_t)c->max_body, 1024, "max body 1k");
	is_str(c->listen, "unix:/tmp/x.sock", "listen");
	is_int(c->log_level, LOG_LEVEL_DEBUG, "log level debug");
	conf_release(c);
}

static void
test_refusals(void)
{
	char		set[200], short_set[200], shared_set[200], es_set[200];
	unsigned char	secret[31];
	const char	*p;

	snprintf(set, sizeof(set), "PARLEY_JWT_KEY_FILE=%s", hs_key);
	memset(secret, 'k', sizeof(secret));
	p = keys_write("short.key", secret, sizeof(secret), 0600);
	snprintf(short_set, sizeof(short_set), "PARLEY_JWT_KEY_FILE=%s", p);
	p = keys_write("shared.key", "0123456789abcdef0123456789abcdef", 32,
	    0644);
	snprintf(shared_set, sizeof(shared_set), "PARLEY_JWT_KEY_FILE=%s", p);
	snprintf(es_set, sizeof(es_set), "PARLEY_JWT_KEY_FILE=%s",
	    keys_es256("es.pem"));

	{ const char *s[] = { NULL };
	  refused("no key file", "jwt_key_file: not set", s); }
	{ const char *s[] = { "PARLEY_JWT_KEY_FILE=/nonexistent/key", NULL };
	  refused("missing key file", "/nonexistent/key", s); }
	{ const char *s[] = { short_set, NULL };
	  refused("31-byte HMAC secret", "32", s); }
	{ const char *s[] = { shared_set, NULL };
	  refused("key readable by others", "other users", s); }
	{ const char *s[] = { set, "PARLEY_JWT_ALG=hs256", NULL };
	  refused("lower-case alg", "jwt_alg", s); }
	{ const char *s[] = { set, "PARLEY_JWT_ALG=none", NULL };
	  refused("alg none", "jwt_alg", s); }
	{ const char *s[] = { set, "PARLEY_JWT_ALG=HS512", NULL };
	  refused("alg HS512", "jwt_alg", s); }
	{ const char *s[] = { set, "PARLEY_JWT_ALG=RS256", NULL };
	  refused("RS256 with an HMAC secret", "", s); }
	{ const char *s[] = { es_set, "PARLEY_JWT_ALG=RS256", NULL };
	  refused("RS256 with an EC key", "", s); }
	{ const char *s[] = { set, "PARLEY_ALLOWED_ORIGINS=*", NULL };
	  refused("'*' origin", "'*'", s); }
	{ const char *s[] = { set, "PARLEY_ALLOWED_ORIGINS=https://a.example/", NULL };
	  refused("origin with a path", "allowed_origins", s); }
	{ const char *s[] = { set, "WS_TOKEN_TTL=0", NULL };
	  refused("token ttl 0", "token_ttl", s); }
	{ const char *s[] = { set, "WS_TOKEN_TTL=5x", NULL };
	  refused("token ttl with a bad unit", "token_ttl", s); }
	{ const char *s[] = { set, "PARLEY_SESSION_TTL=500d", NULL };
	  refused("session ttl over 400d", "session_ttl", s); }
	{ const char *s[] = { set, "PARLEY_COOKIE_NAME=a b", NULL };
	  refused("cookie name with a space", "cookie_name", s); }
	{ const char *s[] = { set, "PARLEY_COOKIE_SECURE=maybe", NULL };
	  refused("cookie_secure not a boolean", "cookie_secure", s); }
	{ const char *s[] = { set, "PARLEY_THREADS=0", NULL };
	  refused("0 threads", "threads", s); }
	{ const char *s[] = { set, "PARLEY_SOCKET_MODE=0999", NULL };
	  refused("socket mode not octal", "socket_mode", s); }
	{ const char *s[] = { set, "PARLEY_MAX_BODY=10", NULL };
	  refused("max body 10 bytes", "max_body", s); }
	{ const char *s[] = { set, "PARLEY_LOG_LEVEL=loud", NULL };
	  refused("unknown log level", "log_level", s); }
	{ const char *s[] = { set, "PARLEY_LISTEN=nowhere", NULL };
	  refused("listen without a port", "listen", s); }
	{ const char *s[] = { set, "PARLEY_RELAY_URL=ws://a\tb", NULL };
	  refused("relay url with a control character", "relay_url", s); }
}

static void
test_refcount(void)
{
	char		 err[512], set[200];
	const char	*s[] = { set, NULL };
	struct conf	*a, *b, *cur;

	snprintf(set, sizeof(set), "PARLEY_JWT_KEY_FILE=%s", hs_key);
	a = keys_conf(err, sizeof(err), s);
	b = keys_conf(err, sizeof(err), s);
	if (a == NULL || b == NULL) {
		ok(0, "two snapshots");
		return;
	}
	conf_publish(a);
	cur = conf_acquire();
	ok(cur == a, "acquire returns the published snapshot");
	conf_publish(b);
	is_int(atomic_load(&cur->refs), 1,
	    "a replaced snapshot lives on while a request holds it");
	conf_release(cur);
	cur = conf_acquire();
	ok(cur == b, "the new one is current");
	conf_release(cur);
	conf_shutdown();
}

int
main(void)
{
	unsigned char	secret[48];

	log_init("token_conf.t", LOG_LEVEL_ERROR);
	keys_setup();
	memset(secret, 0x5a, sizeof(secret));
	hs_key = keys_write("hs.key", secret, sizeof(secret), 0600);
	test_defaults();
	test_values();
	test_refusals();
	test_refcount();
	keys_teardown();
	done_testing();
	return exit_status();
}
