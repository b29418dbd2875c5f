/*
 * conf.c: parley-token's options, checked once into immutable snapshots.
 *
 * The table below is the single list of options: it drives --help,
 * --print-config, the configuration file, the man-page check in the test
 * suite, and conf_build, which validates every value and loads the signing
 * key.  A snapshot is reference counted; SIGHUP builds a new one and
 * publishes it, and a request keeps the one it started with.  A bad
 * snapshot is never published, so a failed reload keeps the old settings.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "token.h"

/* One row: env, flag, type, default, reloadable, help, metavar. */
#define CONF_OPT(e, f, t, d, r, h, m) \
	{ .env = (e), .flag = (f), .type = (t), .def = (d), .reloadable = (r), \
	  .help = (h), .metavar = (m) }

const struct cfg_opt conf_opts[] = {
	CONF_OPT("PARLEY_DB", "db", CFG_SECRET, NULL, 1,
	  "libpq conninfo (PG* variables also apply)", "CONNINFO"),
	CONF_OPT("PARLEY_JWT_ALG", "jwt-alg", CFG_STRING, "HS256", 1,
	  "token signature: HS256, RS256 or ES256", "ALG"),
	CONF_OPT("PARLEY_JWT_KEY_FILE", "jwt-key-file", CFG_STRING, NULL, 1,
	  "HMAC secret (>= 32 bytes) or PEM private key; required", "PATH"),
	CONF_OPT("PARLEY_JWT_KID", "jwt-kid", CFG_STRING, NULL, 1,
	  "key id in the token header (derived from the key when unset)", "KID"),
	CONF_OPT("PARLEY_JWT_ISSUER", "jwt-issuer", CFG_STRING, "parley", 1,
	  "iss claim", "ISS"),
	CONF_OPT("PARLEY_JWT_AUDIENCE", "jwt-audience", CFG_STRING, "parley-relay", 1,
	  "aud claim", "AUD"),
	CONF_OPT("WS_TOKEN_TTL", "token-ttl", CFG_DURATION, "5m", 1,
	  "lifetime of a relay token", "DURATION"),
	CONF_OPT("PARLEY_SESSION_TTL", "session-ttl", CFG_DURATION, "7d", 1,
	  "lifetime of a login session and its cookie", "DURATION"),
	CONF_OPT("PARLEY_COOKIE_NAME", "cookie-name", CFG_STRING, "parley_session", 1,
	  "name of the session cookie", "NAME"),
	CONF_OPT("PARLEY_COOKIE_SECURE", "cookie-secure", CFG_BOOL, "1", 1,
	  "mark the cookie Secure (0 only for plain-http development)", "BOOL"),
	CONF_OPT("PARLEY_ALLOWED_ORIGINS", "allowed-origins", CFG_STRING, NULL, 1,
	  "comma-separated origins allowed to POST; unset: same host only",
	  "LIST"),
	CONF_OPT("PARLEY_RELAY_URL", "relay-url", CFG_STRING, NULL, 1,
	  "relay URL returned with each token (omitted when unset)", "URL"),
	CONF_OPT("PARLEY_LOG_LEVEL", "log-level", CFG_STRING, "info", 1,
	  "error, warn, info or debug", "LEVEL"),
	CONF_OPT("PARLEY_LISTEN", "listen", CFG_STRING, NULL, 0,
	  "serve FastCGI on unix:PATH or HOST:PORT; unset: the socket on "
	  "stdin, systemd's, or CGI", "ADDR"),
	CONF_OPT("PARLEY_THREADS", "threads", CFG_INT, "16", 0,
	  "worker threads, each with its own database connection", "N"),
	CONF_OPT("PARLEY_SOCKET_MODE", "socket-mode", CFG_STRING, "0660", 0,
	  "permissions of a --listen unix: socket (octal)", "MODE"),
	CONF_OPT("PARLEY_SOCKET_GROUP", "socket-group", CFG_STRING, NULL, 0,
	  "group of a --listen unix: socket (name or number)", "GROUP"),
	CONF_OPT("PARLEY_MAX_BODY", "max-body", CFG_SIZE, "16k", 1,
	  "largest login request body accepted", "SIZE"),
	CONF_OPT("PARLEY_SESSION_CACHE", "session-cache", CFG_DURATION, "30s", 0,
	  "answer a session from memory for at most this long (revocations "
	  "apply at once through LISTEN); 0 turns the cache off", "DURATION"),
	CONF_OPT("PARLEY_SESSION_CACHE_SIZE", "session-cache-size", CFG_INT,
	  "10000", 0, "most sessions the session cache holds", "N"),
	{ .env = NULL }
};

static pthread_mutex_t	 conf_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conf	*conf_current;

/* Load the table into a fresh copy; see token.h. */
struct cfg_opt *
conf_load_opts(const struct cfg_cli *cli, char *err, size_t errlen)
{
	struct cfg_opt	*opts;

	if ((opts = cfg_dup(conf_opts)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (cfg_load(opts, cli, err, errlen) < 0) {
		cfg_free(opts);
		return NULL;
	}
	return opts;
}

/* Octal permission bits, at most 0777. */
static int
conf_parse_mode(const char *s, mode_t *out)
{
	unsigned long	 v = 0;
	const char	*p;

	if (s == NULL || *s == '\0' || strlen(s) > 4)
		return -1;
	for (p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '7')
			return -1;
		v = v * 8 + (unsigned long)(*p - '0');
	}
	if (v > 0777)
		return -1;
	*out = (mode_t)v;
	return 0;
}

/* Is s free of control characters (so it is safe in a header or JSON)? */
static int
conf_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* Validate and load keys; see token.h. */
struct conf *
conf_build(struct cfg_opt *opts, char *err, size_t errlen)
{
	struct conf	*c;
	const char	*alg, *s;
	int64_t		 v;
	int		 lvl;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "out of memory");
		cfg_free(opts);
		return NULL;
	}
	atomic_init(&c->refs, 1);
	c->opts = opts;

	if ((s = cfg_str(opts, "PARLEY_LOG_LEVEL")) == NULL ||
	    (lvl = log_level_parse(s)) < 0) {
		snprintf(err, errlen, "log_level: '%.32s' is not error, warn, "
		    "info or debug", s ? s : "");
		goto fail;
	}
	c->log_level = lvl;

	alg = cfg_str(opts, "PARLEY_JWT_ALG");
	if (alg == NULL || (strcmp(alg, "HS256") != 0 &&
	    strcmp(alg, "RS256") != 0 && strcmp(alg, "ES256") != 0)) {
		snprintf(err, errlen, "jwt_alg: unsupported algorithm '%.32s' "
		    "(HS256, RS256 or ES256)", alg ? alg : "");
		goto fail;
	}
	if ((s = cfg_str(opts, "PARLEY_JWT_KEY_FILE")) == NULL) {
		snprintf(err, errlen, "jwt_key_file: not set "
		    "(PARLEY_JWT_KEY_FILE or --jwt-key-file)");
		goto fail;
	}
	c->keys = jwtkey_load(alg, s, cfg_str(opts, "PARLEY_JWT_KID"), 1,
	    err, errlen);
	if (c->keys == NULL)
		goto fail;

	c->jwt.issuer = cfg_str(opts, "PARLEY_JWT_ISSUER");
	c->jwt.audience = cfg_str(opts, "PARLEY_JWT_AUDIENCE");
	if (c->jwt.issuer == NULL || !conf_printable(c->jwt.issuer) ||
	    c->jwt.audience == NULL || !conf_printable(c->jwt.audience)) {
		snprintf(err, errlen, "jwt_issuer/jwt_audience: must be "
		    "printable text");
		goto fail;
	}

	v = cfg_num(opts, "WS_TOKEN_TTL");
	if (v < 1000 || v > 86400 * 1000LL) {
		snprintf(err, errlen, "token_ttl: must be between 1s and 1d");
		goto fail;
	}
	c->token_ttl_s = v / 1000;
	c->jwt.ttl_s = c->token_ttl_s;
	c->jwt.leeway_s = 0;

	/* Browsers cap cookie lifetimes at 400 days (RFC 6265bis). */
	v = cfg_num(opts, "PARLEY_SESSION_TTL");
	if (v < 1000 || v > 400 * 86400 * 1000LL) {
		snprintf(err, errlen, "session_ttl: must be between 1s and 400d");
		goto fail;
	}
	c->session_ttl_s = v / 1000;

	c->cookie_name = cfg_str(opts, "PARLEY_COOKIE_NAME");
	if (c->cookie_name == NULL || !cookie_name_ok(c->cookie_name)) {
		snprintf(err, errlen, "cookie_name: not a cookie name "
		    "(1-64 letters, digits or !#$%%&'*+-.^_`|~)");
		goto fail;
	}
	c->cookie_secure = cfg_num(opts, "PARLEY_COOKIE_SECURE") != 0;

	if (origin_list_parse(cfg_str(opts, "PARLEY_ALLOWED_ORIGINS"),
	    &c->origins, err, errlen) < 0)
		goto fail;

	c->relay_url = cfg_str(opts, "PARLEY_RELAY_URL");
	if (c->relay_url != NULL && (!conf_printable(c->relay_url) ||
	    strlen(c->relay_url) > 2048 ||
	    !util_utf8_valid(c->relay_url, strlen(c->relay_url)))) {
		snprintf(err, errlen, "relay_url: must be printable UTF-8 text "
		    "of at most 2048 bytes");
		goto fail;
	}

	s = cfg_str(opts, "PARLEY_DB");
	c->db = s != NULL ? s : "";

	v = cfg_num(opts, "PARLEY_MAX_BODY");
	if (v < 64 || v > 16 * 1024 * 1024) {
		snprintf(err, errlen, "max_body: must be between 64 and 16m");
		goto fail;
	}
	c->max_body = (size_t)v;

	c->listen = cfg_str(opts, "PARLEY_LISTEN");
	if (c->listen != NULL && (strncmp(c->listen, "unix:", 5) == 0 ?
	    c->listen[5] == '\0' : strrchr(c->listen, ':') == NULL)) {
		snprintf(err, errlen, "listen: '%.64s' is not unix:PATH or "
		    "HOST:PORT", c->listen);
		goto fail;
	}
	v = cfg_num(opts, "PARLEY_THREADS");
	if (v < 1 || v > 1024) {
		snprintf(err, errlen, "threads: must be between 1 and 1024");
		goto fail;
	}
	c->threads = (int)v;
	if (conf_parse_mode(cfg_str(opts, "PARLEY_SOCKET_MODE"),
	    &c->socket_mode) < 0) {
		snprintf(err, errlen, "socket_mode: not an octal mode like 0660");
		goto fail;
	}
	c->socket_group = cfg_str(opts, "PARLEY_SOCKET_GROUP");

	v = cfg_num(opts, "PARLEY_SESSION_CACHE");
	if (v < 0 || v > 86400 * 1000LL) {
		snprintf(err, errlen, "session_cache: must be 0 (off) or at most 1d");
		goto fail;
	}
	c->session_cache_ms = v;
	v = cfg_num(opts, "PARLEY_SESSION_CACHE_SIZE");
	if (v < 1 || v > 1000000) {
		snprintf(err, errlen, "session_cache_size: must be between 1 and "
		    "1000000");
		goto fail;
	}
	c->session_cache_size = (size_t)v;
	return c;
fail:
	conf_release(c);
	return NULL;
}

/* Take one more reference. */
void
conf_hold(struct conf *c)
{
	atomic_fetch_add(&c->refs, 1);
}

/* Drop a reference; the last one frees the snapshot and its keys. */
void
conf_release(struct conf *c)
{
	if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	jwtkey_free(c->keys);
	origin_list_free(&c->origins);
	cfg_free(c->opts);
	free(c);
}

/* Publish a snapshot (takes the caller's reference). */
void
conf_publish(struct conf *c)
{
	struct conf	*old;

	pthread_mutex_lock(&conf_lock);
	old = conf_current;
	conf_current = c;
	pthread_mutex_unlock(&conf_lock);
	log_level = c->log_level;	/* atomic: see common/log.h */
	conf_release(old);
}

/* A reference to the current snapshot. */
struct conf *
conf_acquire(void)
{
	struct conf	*c;

	pthread_mutex_lock(&conf_lock);
	c = conf_current;
	if (c != NULL)
		conf_hold(c);
	pthread_mutex_unlock(&conf_lock);
	return c;
}

/* Release the current snapshot (at exit, after the workers stopped). */
void
conf_shutdown(void)
{
	struct conf	*old;

	pthread_mutex_lock(&conf_lock);
	old = conf_current;
	conf_current = NULL;
	pthread_mutex_unlock(&conf_lock);
	conf_release(old);
}
