/*
 * rcfg.c: the relay's options table and the live settings built from it.
 *
 * One row per option (common/cfg.h gives --help, --print-config,
 * --check-config and the precedence flags > environment > file > defaults).
 * The reloadable rows become an immutable, reference-counted struct rcfg
 * (keys included) that SIGHUP rebuilds and swaps; a bad reload keeps the old
 * one.  The rest (listen address, pool sizes ...) is read once into
 * rcfg_boot; a reload that changes them says a restart is needed.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "relay.h"

static struct cfg_opt rcfg_opts[] = {
	{ "PARLEY_DB", "db", CFG_SECRET, NULL, 0,
	  "libpq conninfo of the database (PG* variables also work)", "CONNINFO",
	  NULL, 0, 0 },
	{ "PARLEY_JWT_ALG", "jwt-alg", CFG_STRING, "HS256", 1,
	  "token algorithm: HS256, RS256 or ES256", "ALG", NULL, 0, 0 },
	{ "PARLEY_JWT_KEY_FILE", "jwt-key-file", CFG_STRING, NULL, 1,
	  "verification key file(s), comma-separated for rotation (required)",
	  "PATHS", NULL, 0, 0 },
	{ "PARLEY_JWT_KID", "jwt-kid", CFG_STRING, NULL, 1,
	  "key id of the first key (default: derived from the key)", "KID",
	  NULL, 0, 0 },
	{ "PARLEY_JWT_ISSUER", "jwt-issuer", CFG_STRING, "parley", 1,
	  "required \"iss\" claim", "ISS", NULL, 0, 0 },
	{ "PARLEY_JWT_AUDIENCE", "jwt-audience", CFG_STRING, "parley-relay", 1,
	  "required \"aud\" claim", "AUD", NULL, 0, 0 },
	{ "PARLEY_JWT_LEEWAY", "jwt-leeway", CFG_DURATION, "5s", 1,
	  "clock skew tolerated for nbf, iat and exp", "DURATION", NULL, 0, 0 },
	{ "PARLEY_RELAY_LISTEN", "listen", CFG_STRING, "127.0.0.1:8090", 0,
	  "address:port serving /ws, /healthz and /metrics", "ADDR:PORT",
	  NULL, 0, 0 },
	{ "PARLEY_RELAY_ID", "relay-id", CFG_STRING, NULL, 0,
	  "this relay's name in the cluster (default: hostname:port)", "NAME",
	  NULL, 0, 0 },
	{ "WS_HEARTBEAT_INTERVAL", "heartbeat-interval", CFG_DURATION, "30s", 1,
	  "WebSocket ping interval", "DURATION", NULL, 0, 0 },
	{ "WS_CONNECTION_TIMEOUT", "connection-timeout", CFG_DURATION, "2m", 1,
	  "close (4000) a connection silent for this long", "DURATION",
	  NULL, 0, 0 },
	{ "PARLEY_AUTH_TIMEOUT", "auth-timeout", CFG_DURATION, "10s", 1,
	  "close (4002) a connection without an auth frame after this",
	  "DURATION", NULL, 0, 0 },
	{ "PARLEY_MAX_FRAME", "max-frame", CFG_SIZE, "64k", 1,
	  "largest inbound message; larger closes with 1009", "SIZE",
	  NULL, 0, 0 },
	{ "PARLEY_MAX_CONN_PER_USER", "max-conn-per-user", CFG_INT, "8", 1,
	  "connections per user in the cluster; the oldest is replaced (4009)",
	  "N",
	  NULL, 0, 0 },
	{ "PARLEY_MAX_CONNECTIONS", "max-connections", CFG_INT, "1000", 0,
	  "WebSocket connections (one thread each); 503 beyond", "N",
	  NULL, 0, 0 },
	{ "PARLEY_RATE", "rate", CFG_STRING, "20/s", 1,
	  "commands per second per connection (burst twice that)", "N/s",
	  NULL, 0, 0 },
	{ "PARLEY_FLOOD_LIMIT", "flood-limit", CFG_INT, "50", 1,
	  "rate_limited replies in a row before closing with 4029", "N",
	  NULL, 0, 0 },
	{ "PARLEY_SEND_QUEUE", "send-queue", CFG_SIZE, "1m", 1,
	  "live outbound bytes queued per connection; beyond closes with 4030",
	  "SIZE", NULL, 0, 0 },
	{ "PARLEY_CONN_RATE", "conn-rate", CFG_STRING, "10/s", 1,
	  "new WebSockets per second per client address (burst twice that; "
	  "0 = no limit); 429 beyond", "N/s", NULL, 0, 0 },
	{ "PARLEY_TRUSTED_PROXIES", "trusted-proxies", CFG_STRING,
	  "127.0.0.1,::1", 1,
	  "peers whose X-Forwarded-For names the client (the last address)",
	  "LIST", NULL, 0, 0 },
	{ "PARLEY_PRESENCE_SCOPE", "presence-scope", CFG_STRING, "all", 1,
	  "presence and user_list cover \"all\" users or \"contacts\"",
	  "SCOPE", NULL, 0, 0 },
	{ "PARLEY_ALLOWED_ORIGINS", "allowed-origins", CFG_STRING, NULL, 1,
	  "comma-separated Origins allowed, each scheme://host[:port] "
	  "(default: same host only)",
	  "LIST", NULL, 0, 0 },
	{ "PARLEY_AUTH_FRAME", "auth-frame", CFG_BOOL, "1", 1,
	  "accept the first-frame auth; 0 refuses upgrades without a token",
	  "BOOL", NULL, 0, 0 },
	{ "PARLEY_QUERY_TOKEN", "query-token", CFG_BOOL, "0", 1,
	  "also accept the token as ?token= in the URL (leaks into logs)",
	  "BOOL", NULL, 0, 0 },
	{ "PARLEY_DB_POOL", "db-pool", CFG_INT, "4", 0,
	  "database worker threads (one connection each)", "N", NULL, 0, 0 },
	{ "PARLEY_WRITERS", "writers", CFG_INT, "2", 0,
	  "threads writing to WebSockets", "N", NULL, 0, 0 },
	{ "PARLEY_LOG_LEVEL", "log-level", CFG_STRING, "info", 1,
	  "error, warn, info or debug", "LEVEL", NULL, 0, 0 },
	{ NULL, NULL, 0, NULL, 0, NULL, NULL, NULL, 0, 0 }
};

struct rcfg_boot rcfg_boot;

static struct cfg_cli	 rcfg_cli;
static struct cfg_opt	*rcfg_table = rcfg_opts;	/* current values */
static pthread_mutex_t	 rcfg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rcfg	*rcfg_cur;

static void
rcfg_free(struct rcfg *r)
{
	size_t	i;

	if (r == NULL)
		return;
	jwtkey_free(r->keys);
	free(r->issuer);
	free(r->audience);
	origin_list_free(&r->origins);
	for (i = 0; i < r->nproxies; i++)
		free(r->proxies[i]);
	free(r->proxies);
	free(r);
}

/* "20/s", "20" -> 20.0 per second.  0 or -1. */
static int
rcfg_parse_rate(const char *s, double *out)
{
	char	*end;
	double	 v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || !(v > 0) || v > 1e6)
		return -1;
	if (*end != '\0' && strcmp(end, "/s") != 0)
		return -1;
	*out = v;
	return 0;
}

/* Comma-separated IP addresses, each canonicalised.  0, or -1 with err. */
static int
rcfg_parse_list(const char *s, char ***out, size_t *n, char *err,
    size_t errlen)
{
	unsigned char	 bin[16];
	char		 tmp[64], canon[64], **nv;
	const char	*p = s, *e;
	size_t		 len;
	int		 af;

	while (*p != '\0') {
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		for (e = p; *e != '\0' && *e != ',' && *e != ' '; e++)
			;
		len = (size_t)(e - p);
		if (len >= sizeof(tmp)) {
			snprintf(err, errlen, "trusted_proxies: bad address");
			return -1;
		}
		memcpy(tmp, p, len);
		tmp[len] = '\0';
		af = strchr(tmp, ':') ? AF_INET6 : AF_INET;
		if (inet_pton(af, tmp, bin) != 1 ||
		    inet_ntop(af, bin, canon, sizeof(canon)) == NULL) {
			snprintf(err, errlen, "trusted_proxies: '%s' is not an "
			    "IP address", tmp);
			return -1;
		}
		if ((nv = realloc(*out, (*n + 1) * sizeof(*nv))) == NULL ||
		    (nv[*n] = strdup(canon)) == NULL) {
			if (nv != NULL)
				*out = nv;
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		*out = nv;
		(*n)++;
		p = e;
	}
	return 0;
}

/* Build a live snapshot from a loaded table.  NULL with err set. */
static struct rcfg *
rcfg_build(const struct cfg_opt *t, char *err, size_t errlen)
{
	struct rcfg	*r;
	const char	*s;
	char		 kerr[256];

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&r->refs, 1);
	if ((s = cfg_str(t, "PARLEY_JWT_KEY_FILE")) == NULL || *s == '\0') {
		snprintf(err, errlen, "jwt_key_file: required (PARLEY_JWT_KEY_FILE)");
		goto fail;
	}
	r->keys = jwtkey_load(cfg_str(t, "PARLEY_JWT_ALG"), s,
	    cfg_str(t, "PARLEY_JWT_KID"), 0, kerr, sizeof(kerr));
	if (r->keys == NULL) {
		snprintf(err, errlen, "%s", kerr);
		goto fail;
	}
	r->issuer = strdup(cfg_str(t, "PARLEY_JWT_ISSUER"));
	r->audience = strdup(cfg_str(t, "PARLEY_JWT_AUDIENCE"));
	if (r->issuer == NULL || r->audience == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	r->jp.issuer = r->issuer;
	r->jp.audience = r->audience;
	r->jp.ttl_s = 0;
	r->jp.leeway_s = cfg_num(t, "PARLEY_JWT_LEEWAY") / 1000;

	r->heartbeat_ms = cfg_num(t, "WS_HEARTBEAT_INTERVAL");
	r->conn_timeout_ms = cfg_num(t, "WS_CONNECTION_TIMEOUT");
	r->auth_timeout_ms = cfg_num(t, "PARLEY_AUTH_TIMEOUT");
	if (r->heartbeat_ms < 1000 || r->conn_timeout_ms < 1000 ||
	    r->auth_timeout_ms < 100) {
		snprintf(err, errlen, "heartbeat_interval and connection_timeout "
		    "must be at least 1s, auth_timeout at least 100ms");
		goto fail;
	}
	r->max_frame = cfg_num(t, "PARLEY_MAX_FRAME");
	if (r->max_frame < 256 || r->max_frame > 64 * 1024 * 1024) {
		snprintf(err, errlen, "max_frame: must be between 256 and 64m");
		goto fail;
	}
	r->max_conn_per_user = cfg_num(t, "PARLEY_MAX_CONN_PER_USER");
	r->flood_limit = cfg_num(t, "PARLEY_FLOOD_LIMIT");
	r->send_queue = cfg_num(t, "PARLEY_SEND_QUEUE");
	if (r->max_conn_per_user < 1 || r->flood_limit < 1 ||
	    r->send_queue < 4096) {
		snprintf(err, errlen, "max_conn_per_user and flood_limit must be "
		    ">= 1, send_queue >= 4k");
		goto fail;
	}
	if (rcfg_parse_rate(cfg_str(t, "PARLEY_RATE"), &r->rate) == -1) {
		snprintf(err, errlen, "rate: expected N/s, got '%s'",
		    cfg_str(t, "PARLEY_RATE"));
		goto fail;
	}
	s = cfg_str(t, "PARLEY_CONN_RATE");
	if (strcmp(s, "0") == 0 || strcmp(s, "0/s") == 0)
		r->conn_rate = 0;
	else if (rcfg_parse_rate(s, &r->conn_rate) == -1) {
		snprintf(err, errlen, "conn_rate: expected N/s or 0, got '%s'", s);
		goto fail;
	}
	if ((s = cfg_str(t, "PARLEY_TRUSTED_PROXIES")) != NULL &&
	    rcfg_parse_list(s, &r->proxies, &r->nproxies, err, errlen) == -1)
		goto fail;
	s = cfg_str(t, "PARLEY_PRESENCE_SCOPE");
	if (strcmp(s, "all") == 0)
		r->presence_contacts = 0;
	else if (strcmp(s, "contacts") == 0)
		r->presence_contacts = 1;
	else {
		snprintf(err, errlen, "presence_scope: expected all or contacts, "
		    "got '%s'", s);
		goto fail;
	}
	/* "*", "null" and malformed entries are refused (origin.h). */
	if (origin_list_parse(cfg_str(t, "PARLEY_ALLOWED_ORIGINS"),
	    &r->origins, err, errlen) == -1)
		goto fail;
	r->query_token = cfg_num(t, "PARLEY_QUERY_TOKEN") != 0;
	r->auth_frame = cfg_num(t, "PARLEY_AUTH_FRAME") != 0;
	if (log_level_parse(cfg_str(t, "PARLEY_LOG_LEVEL")) < 0) {
		snprintf(err, errlen, "log_level: expected error, warn, info or "
		    "debug, got '%s'", cfg_str(t, "PARLEY_LOG_LEVEL"));
		goto fail;
	}
	return r;
fail:
	rcfg_free(r);
	return NULL;
}

/* Fill rcfg_boot from the table.  0 or -1 with err. */
static int
rcfg_build_boot(const struct cfg_opt *t, struct rcfg_boot *b, char *err,
    size_t errlen)
{
	const char	*s, *port;
	char		 host[256];

	memset(b, 0, sizeof(*b));
	s = cfg_str(t, "PARLEY_DB");
	b->db = strdup(s ? s : "");
	b->listen = strdup(cfg_str(t, "PARLEY_RELAY_LISTEN"));
	if (b->db == NULL || b->listen == NULL)
		goto nomem;
	if ((s = cfg_str(t, "PARLEY_RELAY_ID")) != NULL && *s != '\0') {
		b->relay_id = strdup(s);
	} else {
		if (gethostname(host, sizeof(host)) == -1)
			util_strlcpy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		port = strrchr(b->listen, ':');
		port = port ? port + 1 : b->listen;
		if (asprintf(&b->relay_id, "%s:%s", host, port) == -1)
			b->relay_id = NULL;
	}
	if (b->relay_id == NULL)
		goto nomem;
	b->db_pool = (int)cfg_num(t, "PARLEY_DB_POOL");
	b->writers = (int)cfg_num(t, "PARLEY_WRITERS");
	b->max_connections = (int)cfg_num(t, "PARLEY_MAX_CONNECTIONS");
	if (b->db_pool < 1 || b->db_pool > 64 || b->writers < 1 ||
	    b->writers > 64) {
		snprintf(err, errlen, "db_pool and writers: must be 1 to 64");
		return -1;
	}
	if (b->max_connections < 1 || b->max_connections > 30000) {
		snprintf(err, errlen, "max_connections: must be 1 to 30000 "
		    "(each is a thread)");
		return -1;
	}
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* Parse argv and load; see relay.h. */
int
rcfg_init(int argc, char **argv)
{
	char		 err[512];
	struct rcfg	*r;

	if (cfg_parse_args(rcfg_opts, argc, argv, &rcfg_cli, err,
	    sizeof(err)) == -1) {
		fprintf(stderr, "%s: %s (try --help)\n", RELAY_PROGNAME, err);
		return -1;
	}
	switch (rcfg_cli.action) {
	case CFG_HELP:
		cfg_print_help(stdout, RELAY_PROGNAME, "[options]", rcfg_opts);
		return 1;
	case CFG_VERSION:
		printf("%s %s\n", RELAY_PROGNAME, PACKAGE_VERSION);
		return 1;
	default:
		break;
	}
	if (cfg_load(rcfg_opts, &rcfg_cli, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s: %s\n", RELAY_PROGNAME, err);
		return -1;
	}
	if (rcfg_cli.action == CFG_PRINT) {
		cfg_print_config(stdout, rcfg_opts);
		return 1;
	}
	if (rcfg_build_boot(rcfg_opts, &rcfg_boot, err, sizeof(err)) == -1 ||
	    (r = rcfg_build(rcfg_opts, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s: %s\n", RELAY_PROGNAME, err);
		return -1;
	}
	log_level = log_level_parse(cfg_str(rcfg_opts, "PARLEY_LOG_LEVEL"));
	if (rcfg_cli.action == CFG_CHECK) {
		rcfg_free(r);
		printf("ok\n");
		return 1;
	}
	rcfg_cur = r;
	return 0;
}

/* SIGHUP: reload; see relay.h. */
int
rcfg_reload(void)
{
	static const char *const fixed[] = {
		"PARLEY_DB", "PARLEY_RELAY_LISTEN", "PARLEY_RELAY_ID",
		"PARLEY_DB_POOL", "PARLEY_WRITERS", "PARLEY_MAX_CONNECTIONS",
		NULL
	};
	struct cfg_opt	*t;
	struct rcfg	*r, *old;
	char		 err[512];
	size_t		 i;

	if ((t = cfg_dup(rcfg_table)) == NULL) {
		log_error("reload: out of memory");
		return -1;
	}
	if (cfg_load(t, &rcfg_cli, err, sizeof(err)) == -1 ||
	    (r = rcfg_build(t, err, sizeof(err))) == NULL) {
		log_error("reload failed, keeping the old settings: %s", err);
		cfg_free(t);
		return -1;
	}
	for (i = 0; fixed[i] != NULL; i++) {
		const char *a = cfg_str(rcfg_table, fixed[i]);
		const char *b = cfg_str(t, fixed[i]);

		if ((a == NULL) != (b == NULL) ||
		    (a != NULL && strcmp(a, b) != 0))
			log_warnx("reload: %s changed; it takes effect after a "
			    "restart", fixed[i]);
	}
	/*
	 * common/log.h's log_level is a plain volatile int read by every
	 * thread: write it only when the operator changed it.
	 */
	if (log_level_parse(cfg_str(t, "PARLEY_LOG_LEVEL")) != log_level)
		log_level = log_level_parse(cfg_str(t, "PARLEY_LOG_LEVEL"));
	pthread_mutex_lock(&rcfg_mu);
	old = rcfg_cur;
	rcfg_cur = r;
	pthread_mutex_unlock(&rcfg_mu);
	rcfg_put(old);
	if (rcfg_table != rcfg_opts)
		cfg_free(rcfg_table);
	else
		cfg_clear(rcfg_opts);
	rcfg_table = t;
	log_info("configuration and keys reloaded");
	return 0;
}

/* The current snapshot, referenced; see relay.h. */
struct rcfg *
rcfg_get(void)
{
	struct rcfg	*r;

	pthread_mutex_lock(&rcfg_mu);
	r = rcfg_cur;
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&rcfg_mu);
	return r;
}

/* Drop a reference to a snapshot. */
void
rcfg_put(struct rcfg *r)
{
	if (r != NULL &&
	    atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
		rcfg_free(r);
}

/* Release everything; see relay.h. */
void
rcfg_shutdown(void)
{
	pthread_mutex_lock(&rcfg_mu);
	rcfg_put(rcfg_cur);
	rcfg_cur = NULL;
	pthread_mutex_unlock(&rcfg_mu);
	if (rcfg_table != rcfg_opts)
		cfg_free(rcfg_table);
	else
		cfg_clear(rcfg_opts);
	rcfg_table = rcfg_opts;
	if (rcfg_boot.db != NULL)
		explicit_bzero(rcfg_boot.db, strlen(rcfg_boot.db));
	free(rcfg_boot.db);
	free(rcfg_boot.listen);
	free(rcfg_boot.relay_id);
	memset(&rcfg_boot, 0, sizeof(rcfg_boot));
}
