/*
 * auth.c: who may open a WebSocket, and as whom (PROTOCOL §2
 * "Authenticate").
 *
 * The handshake way: civetweb's connect handler reads the offered
 * subprotocols (`parley.v1`, `parley.token.<jwt>`, `parley.instance.<id>`),
 * checks the Origin (allowlist, or the same scheme and host), the capacity,
 * the token (jwtkey_verify: signature, alg, iss, aud, exp, nbf, claim
 * types) and the live session (parley.session_check through the pool,
 * bounded wait), and refuses with an HTTP status and a JSON body before the
 * upgrade, so an unauthenticated peer never gets a WebSocket.  civetweb
 * then answers with the one subprotocol we registered, `parley.v1`.
 *
 * The first-frame way: `{"type":"auth","token",...}` within
 * PARLEY_AUTH_TIMEOUT (timer.c closes with 4002), failures close with
 * 4001/4010/4011.  Both end in auth_welcome and conn_authenticated.
 *
 * Before any of that, PARLEY_CONN_RATE limits new connections per client
 * address (429); behind a trusted proxy (PARLEY_TRUSTED_PROXIES) the
 * address is the last of X-Forwarded-For, and it is what logs show as ip=;
 * the scheme the client used, for the same-host Origin rule, is that
 * proxy's X-Forwarded-Proto.
 *
 * Tokens are never logged; the verification reason is (it is static text).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <arpa/inet.h>

#include <civetweb.h>

#include "relay.h"

#define AUTH_DB_WAIT_MS		5000

/* ---------------------------------------------------------------- session check */

struct auth_job {
	struct job	 job;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	int		 refs;		/* waiter + pool, under mu */
	int		 done;
	int		 rc;		/* DB_OK, DB_UNAVAILABLE, DB_ERROR */
	int		 found;
	char		 sid[128];
	int64_t		 uid;
	char		 name[256];
	int64_t		 expires;
};

static void
auth_job_put(struct auth_job *a)
{
	int	last;

	pthread_mutex_lock(&a->mu);
	last = --a->refs == 0;
	pthread_mutex_unlock(&a->mu);
	if (!last)
		return;
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
	explicit_bzero(a->sid, sizeof(a->sid));
	free(a);
}

static void
auth_job_finish(struct auth_job *a, int rc)
{
	pthread_mutex_lock(&a->mu);
	a->rc = rc;
	a->done = 1;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	auth_job_put(a);
}

static void
auth_job_run(struct job *job, struct db *db)
{
	struct auth_job	*a = (struct auth_job *)job;
	const char	*v[1] = { a->sid };
	PGresult	*res = NULL;
	int		 rc;

	rc = dbpool_exec(db, STMT_SESSION, 1, v, &res);
	if (rc == DB_OK && PQntuples(res) >= 1 && PQnfields(res) >= 3) {
		a->found = 1;
		a->uid = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		util_strlcpy(a->name, PQgetvalue(res, 0, 1), sizeof(a->name));
		a->expires = PQgetisnull(res, 0, 2) ? 0 :
		    strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	} else if (rc != DB_OK) {
		log_warnx_ratelimited(10, "session check failed: %s", db->err);
	}
	PQclear(res);
	auth_job_finish(a, rc);
}

static void
auth_job_drop(struct job *job)
{
	auth_job_finish((struct auth_job *)job, DB_UNAVAILABLE);
}

/* Ask the pool about a session and wait (bounded).  DB_* result. */
static int
auth_session_check(const char *sid, struct auth_job *out)
{
	struct auth_job	*a;
	struct timespec	 ts;
	int		 rc;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return DB_UNAVAILABLE;
	pthread_mutex_init(&a->mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&a->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	a->refs = 2;
	a->job.run = auth_job_run;
	a->job.drop = auth_job_drop;
	util_strlcpy(a->sid, sid, sizeof(a->sid));
	dbpool_submit(&a->job);

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += AUTH_DB_WAIT_MS / 1000;
	pthread_mutex_lock(&a->mu);
	while (!a->done)
		if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) != 0)
			break;
	if (a->done) {
		rc = a->rc;
		out->found = a->found;
		out->uid = a->uid;
		memcpy(out->name, a->name, sizeof(out->name));
		out->expires = a->expires;
	} else {
		rc = DB_UNAVAILABLE;	/* the pool is stuck: give up waiting */
	}
	pthread_mutex_unlock(&a->mu);
	auth_job_put(a);
	return rc;
}

/* Verify a token and its session; see relay.h. */
enum auth_result
auth_token(const char *token, struct auth_ident *id, const char **reason)
{
	struct jwtkey_claims	 cl;
	struct auth_job		 s;
	struct rcfg		*r;
	enum jwtkey_result	 vr;
	int			 rc;

	memset(&cl, 0, sizeof(cl));
	r = rcfg_get();
	vr = jwtkey_verify(r->keys, &r->jp, token, (int64_t)time(NULL), &cl,
	    reason);
	rcfg_put(r);
	if (vr == JWTKEY_EXPIRED)
		return AUTH_EXPIRED;
	if (vr != JWTKEY_OK)
		return AUTH_INVALID;

	memset(&s, 0, sizeof(s));
	rc = auth_session_check(cl.sid, &s);
	if (rc == DB_UNAVAILABLE) {
		*reason = "database unavailable";
		return AUTH_UNAVAILABLE;
	}
	if (rc != DB_OK) {
		*reason = "session check failed";
		return AUTH_UNAVAILABLE;
	}
	if (!s.found) {
		*reason = "session revoked or expired";
		return AUTH_REVOKED;
	}
	if (s.uid != cl.sub) {
		*reason = "session belongs to another user";
		return AUTH_INVALID;
	}
	memset(id, 0, sizeof(*id));
	id->uid = cl.sub;
	util_strlcpy(id->name, s.name[0] != '\0' ? s.name : cl.name,
	    sizeof(id->name));
	util_strlcpy(id->sid, cl.sid, sizeof(id->sid));
	id->token_exp = cl.exp;
	id->session_exp = s.expires;
	explicit_bzero(&cl, sizeof(cl));
	*reason = NULL;
	return AUTH_OK;
}

/* ---------------------------------------------------------------- client address */

#define AUTH_ADDR_BUCKETS	4096
#define AUTH_ADDR_MAX		65536	/* addresses tracked; beyond, not limited */
#define AUTH_ADDR_IDLE_MS	10000

struct auth_addr {
	char			 ip[48];
	double			 tokens;
	int64_t			 at_ms;
	struct auth_addr	*next;
};

static pthread_mutex_t	 auth_addr_mu = PTHREAD_MUTEX_INITIALIZER;
static struct auth_addr	*auth_addr_tab[AUTH_ADDR_BUCKETS];
static size_t		 auth_addr_n;
static int64_t		 auth_addr_pruned_ms;

/* Forget addresses idle long enough for a full bucket; mutex held. */
static void
auth_addr_prune_locked(int64_t now, int all)
{
	struct auth_addr	**pp, *a;
	size_t			  i;

	for (i = 0; i < AUTH_ADDR_BUCKETS; i++)
		for (pp = &auth_addr_tab[i]; (a = *pp) != NULL;) {
			if (all || now - a->at_ms > AUTH_ADDR_IDLE_MS) {
				*pp = a->next;
				free(a);
				auth_addr_n--;
			} else {
				pp = &a->next;
			}
		}
	auth_addr_pruned_ms = now;
}

/*
 * PARLEY_CONN_RATE: a token bucket per client address (burst twice the
 * rate).  1 when this new connection may proceed.
 */
static int
auth_addr_ok(const char *ip, double rate)
{
	struct auth_addr	*a;
	uint64_t		 h = 1469598103934665603ull;
	const char		*p;
	int64_t			 now = util_mono_ms();
	int			 ok = 1;

	if (rate <= 0)
		return 1;
	for (p = ip; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	pthread_mutex_lock(&auth_addr_mu);
	if (now - auth_addr_pruned_ms > AUTH_ADDR_IDLE_MS)
		auth_addr_prune_locked(now, 0);
	for (a = auth_addr_tab[h % AUTH_ADDR_BUCKETS]; a != NULL; a = a->next)
		if (strcmp(a->ip, ip) == 0)
			break;
	if (a == NULL && auth_addr_n < AUTH_ADDR_MAX &&
	    (a = calloc(1, sizeof(*a))) != NULL) {
		util_strlcpy(a->ip, ip, sizeof(a->ip));
		a->tokens = 2 * rate;
		a->at_ms = now;
		a->next = auth_addr_tab[h % AUTH_ADDR_BUCKETS];
		auth_addr_tab[h % AUTH_ADDR_BUCKETS] = a;
		auth_addr_n++;
	}
	if (a != NULL) {
		a->tokens += (double)(now - a->at_ms) * rate / 1000.0;
		if (a->tokens > 2 * rate)
			a->tokens = 2 * rate;
		a->at_ms = now;
		if (a->tokens < 1.0)
			ok = 0;
		else
			a->tokens -= 1.0;
	}
	pthread_mutex_unlock(&auth_addr_mu);
	return ok;
}

/* Forget the per-address state at exit; see relay.h. */
void
auth_fini(void)
{
	pthread_mutex_lock(&auth_addr_mu);
	auth_addr_prune_locked(0, 1);
	pthread_mutex_unlock(&auth_addr_mu);
}

/* Is the peer one of PARLEY_TRUSTED_PROXIES? */
static int
auth_peer_trusted(const struct mg_request_info *ri, const struct rcfg *r)
{
	size_t	i;

	for (i = 0; i < r->nproxies; i++)
		if (strcmp(r->proxies[i], ri->remote_addr) == 0)
			return 1;
	return 0;
}

/*
 * The client's address: the peer's, or, when the peer is a trusted proxy,
 * the last address of X-Forwarded-For (the one nginx appended).
 */
static void
auth_client_ip(const struct mg_connection *mgc,
    const struct mg_request_info *ri, const struct rcfg *r, char *out,
    size_t outlen)
{
	const char	*xff, *last;
	unsigned char	 bin[16];
	char		 tmp[64];
	size_t		 n;
	int		 af;

	util_strlcpy(out, ri->remote_addr, outlen);
	if (!auth_peer_trusted(ri, r) ||
	    (xff = mg_get_header(mgc, "X-Forwarded-For")) == NULL)
		return;
	last = strrchr(xff, ',');
	last = last ? last + 1 : xff;
	while (*last == ' ' || *last == '\t')
		last++;
	n = strcspn(last, " \t");
	if (n == 0 || n >= sizeof(tmp))
		return;
	memcpy(tmp, last, n);
	tmp[n] = '\0';
	af = strchr(tmp, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(af, tmp, bin) == 1)
		inet_ntop(af, bin, out, (socklen_t)outlen);
}

/* ---------------------------------------------------------------- handshake */

/* A client_instance: 1..64 of [A-Za-z0-9._:-]. */
static int
auth_instance_ok(const char *s, size_t n)
{
	size_t	i;

	if (n == 0 || n > RELAY_INSTANCE_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		    ch == '-' || ch == ':'))
			return 0;
	}
	return 1;
}

struct auth_offer {
	int		 v1;
	int		 ntokens;
	char		*token;		/* malloc'd */
	char		 instance[RELAY_INSTANCE_MAX + 1];
	int		 bad_instance;
};

/* Sec-WebSocket-Protocol, every header line, comma-separated tokens. */
static void
auth_parse_offer(const struct mg_request_info *ri, struct auth_offer *o)
{
	const char	*p, *e;
	size_t		 n;
	int		 i;

	for (i = 0; i < ri->num_headers; i++) {
		if (strcasecmp(ri->http_headers[i].name,
		    "Sec-WebSocket-Protocol") != 0)
			continue;
		for (p = ri->http_headers[i].value; *p != '\0'; p = e) {
			while (*p == ' ' || *p == '\t' || *p == ',')
				p++;
			for (e = p; *e != '\0' && *e != ','; e++)
				;
			n = (size_t)(e - p);
			while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
				n--;
			if (n == 9 && strncmp(p, "parley.v1", 9) == 0) {
				o->v1 = 1;
			} else if (n > 13 && strncmp(p, "parley.token.", 13) == 0) {
				if (o->ntokens++ == 0)
					o->token = strndup(p + 13, n - 13);
			} else if (n > 16 &&
			    strncmp(p, "parley.instance.", 16) == 0) {
				if (auth_instance_ok(p + 16, n - 16)) {
					memcpy(o->instance, p + 16, n - 16);
					o->instance[n - 16] = '\0';
				} else {
					o->bad_instance = 1;
				}
			}
		}
	}
}

/* "token=" in a query string, when the operator allows it. */
static char *
auth_query_token(const char *q)
{
	const char	*p, *e;

	for (p = q; p != NULL && *p != '\0'; p = strchr(p, '&')) {
		if (*p == '&')
			p++;
		if (strncmp(p, "token=", 6) == 0) {
			p += 6;
			e = strchr(p, '&');
			return strndup(p, e ? (size_t)(e - p) : strlen(p));
		}
	}
	return NULL;
}

/*
 * A request header that decides something: NULL when there is none, "null"
 * when it is given several times with different values (no browser or
 * proxy of ours does that; a forger could, and the first one alone must
 * not decide), else the value.  civetweb's mg_get_header returns only the
 * first, so look at them all.
 */
static const char *
auth_header_once(const struct mg_connection *mgc, const char *want)
{
	const struct mg_request_info	*ri = mg_get_request_info(mgc);
	const char			*found = NULL;
	int				 i;

	if (ri == NULL)
		return NULL;
	for (i = 0; i < ri->num_headers; i++) {
		const char *name = ri->http_headers[i].name;
		const char *value = ri->http_headers[i].value;

		if (name == NULL || strcasecmp(name, want) != 0)
			continue;
		if (value == NULL)
			value = "";
		if (found == NULL)
			found = value;
		else if (strcmp(found, value) != 0)
			return "null";
	}
	return found;
}

/*
 * The scheme the client used: "https" or "http" as a trusted proxy's
 * X-Forwarded-Proto says (nginx: proxy_set_header X-Forwarded-Proto
 * $scheme), else that of our own listener.  NULL when a trusted proxy
 * sends anything else (a list, garbage, conflicting headers): then no
 * Origin is the same origin, and only an Origin-less or listed one passes.
 */
static const char *
auth_request_scheme(const struct mg_connection *mgc,
    const struct mg_request_info *ri, const struct rcfg *r)
{
	const char	*p;

	if (auth_peer_trusted(ri, r) &&
	    (p = auth_header_once(mgc, "X-Forwarded-Proto")) != NULL) {
		if (strcasecmp(p, "https") == 0)
			return "https";
		if (strcasecmp(p, "http") == 0)
			return "http";
		return NULL;
	}
	return ri->is_ssl ? "https" : "http";
}

/*
 * PROTOCOL §3 PARLEY_ALLOWED_ORIGINS: a request without Origin is allowed;
 * else the Origin must be listed, or (no list) be the request's own scheme,
 * host and port (origin_allowed decides, for parley-token too, so a
 * trailing '/' is refused alike).  "null", malformed and conflicting
 * Origins are refused.
 */
static int
auth_origin_ok(const struct mg_connection *mgc,
    const struct mg_request_info *ri, const struct rcfg *r)
{
	return origin_allowed(&r->origins, auth_header_once(mgc, "Origin"),
	    mg_get_header(mgc, "Host"), auth_request_scheme(mgc, ri, r));
}

/* The connect handler; see relay.h. */
int
auth_handshake(const struct mg_connection *cmgc)
{
	struct mg_connection		*mgc = (struct mg_connection *)cmgc;
	const struct mg_request_info	*ri = mg_get_request_info(cmgc);
	struct auth_offer		 o;
	struct auth_ident		 id;
	struct rcfg			*r;
	struct conn			*c;
	enum auth_result		 ar;
	const char			*why = NULL;
	char				 ip[48];
	int				 refused = 1;

	memset(&o, 0, sizeof(o));
	r = rcfg_get();
	auth_client_ip(cmgc, ri, r, ip, sizeof(ip));
	if (server_draining()) {
		server_reply_error(mgc, 503, "unavailable",
		    "the relay is shutting down", "Retry-After: 1\r\n");
		goto done;
	}
	if (!auth_addr_ok(ip, r->conn_rate)) {
		log_warnx_ratelimited(10, "ip=%s: refused: too many new "
		    "connections", ip);
		server_reply_error(mgc, 429, "rate_limited",
		    "too many new connections; retry later", "Retry-After: 1\r\n");
		goto done;
	}
	if (conn_count() >= (size_t)rcfg_boot.max_connections) {
		log_warnx_ratelimited(10, "ip=%s: refused: %d connections",
		    ip, rcfg_boot.max_connections);
		server_reply_error(mgc, 503, "unavailable",
		    "too many connections", "Retry-After: 5\r\n");
		goto done;
	}
	auth_parse_offer(ri, &o);
	if (o.token != NULL && !o.v1) {
		server_reply_error(mgc, 400, "bad_request",
		    "a token subprotocol needs parley.v1 offered beside it", NULL);
		goto done;
	}
	if (o.ntokens > 1 || o.bad_instance) {
		server_reply_error(mgc, 400, "bad_request", o.bad_instance ?
		    "bad parley.instance subprotocol" :
		    "more than one token offered", NULL);
		goto done;
	}
	if (!auth_origin_ok(cmgc, ri, r)) {
		log_warnx_ratelimited(10, "ip=%s: forbidden Origin", ip);
		server_reply_error(mgc, 403, "forbidden_origin",
		    "this Origin may not connect", NULL);
		goto done;
	}
	if (o.token == NULL && r->query_token && ri->query_string != NULL)
		o.token = auth_query_token(ri->query_string);
	if (o.token == NULL && !r->auth_frame) {
		/* PARLEY_AUTH_FRAME=0: no WebSocket without a token. */
		server_reply_error(mgc, 401, "invalid_token",
		    "a token is required in the handshake", NULL);
		goto done;
	}
	if ((c = conn_new(ip, ri->remote_port)) == NULL) {
		server_reply_error(mgc, 503, "unavailable", "out of memory",
		    "Retry-After: 5\r\n");
		goto done;
	}
	if (o.token != NULL) {
		ar = auth_token(o.token, &id, &why);
		switch (ar) {
		case AUTH_OK:
			break;
		case AUTH_EXPIRED:
			server_reply_error(mgc, 401, "token_expired",
			    "the token has expired", NULL);
			break;
		case AUTH_REVOKED:
			server_reply_error(mgc, 401, "session_revoked",
			    "the session was revoked or has expired", NULL);
			break;
		case AUTH_UNAVAILABLE:
			server_reply_error(mgc, 503, "unavailable",
			    "database unavailable", "Retry-After: 2\r\n");
			break;
		case AUTH_INVALID:
		default:
			server_reply_error(mgc, 401, "invalid_token",
			    "the token is not valid", NULL);
			break;
		}
		if (ar != AUTH_OK) {
			log_info("ip=%s: handshake refused: %s", ip,
			    why ? why : "invalid token");
			conn_unref(c);
			goto done;
		}
		if ((c->hs = malloc(sizeof(*c->hs))) == NULL) {
			server_reply_error(mgc, 503, "unavailable",
			    "out of memory", "Retry-After: 5\r\n");
			conn_unref(c);
			goto done;
		}
		*c->hs = id;
		explicit_bzero(&id, sizeof(id));
	}
	util_strlcpy(c->instance, o.instance, sizeof(c->instance));
	mg_set_user_connection_data(cmgc, c);
	refused = 0;
done:
	if (refused)
		metrics_inc(M_CONN_REFUSED);
	if (o.token != NULL) {
		explicit_bzero(o.token, strlen(o.token));
		free(o.token);
	}
	rcfg_put(r);
	return refused;
}

/* ---------------------------------------------------------------- in band */

/* Queue `welcome`; see relay.h. */
void
auth_welcome(struct conn *c, const struct auth_ident *id)
{
	struct rcfg	*r = rcfg_get();
	char		 ts[25];
	json_t		*j;

	util_rfc3339(util_now_ms(), ts);
	j = json_pack("{s:s, s:{s:I, s:s}, s:I, s:I, s:I, s:s}",
	    "type", "welcome",
	    "user", "id", (json_int_t)id->uid, "name", id->name,
	    "connection_id", (json_int_t)c->id,
	    "heartbeat_interval", (json_int_t)(r->heartbeat_ms / 1000),
	    "token_expires_at", (json_int_t)id->token_exp,
	    "server_time", ts);
	rcfg_put(r);
	cmd_send_json(c, j);
}

/* The first-frame `auth`; see relay.h. */
void
auth_frame(struct conn *c, json_t *msg)
{
	struct auth_ident	 id;
	struct rcfg		*r;
	const char		*token, *inst, *why = NULL;
	char			 instance[RELAY_INSTANCE_MAX + 1];
	int64_t			 maxu;

	if ((token = jsonutil_get_str(msg, "token")) == NULL) {
		conn_close(c, 4001, "token required");
		return;
	}
	util_strlcpy(instance, c->instance, sizeof(instance));
	if ((inst = json_string_value(json_object_get(msg,
	    "client_instance"))) != NULL) {
		if (!auth_instance_ok(inst, strlen(inst))) {
			conn_close(c, 4001, "bad client_instance");
			return;
		}
		util_strlcpy(instance, inst, sizeof(instance));
	} else if (json_object_get(msg, "client_instance") != NULL &&
	    !json_is_null(json_object_get(msg, "client_instance"))) {
		conn_close(c, 4001, "bad client_instance");
		return;
	}
	switch (auth_token(token, &id, &why)) {
	case AUTH_OK:
		break;
	case AUTH_EXPIRED:
		conn_close(c, 4010, "token expired");
		return;
	case AUTH_REVOKED:
		conn_close(c, 4011, "session revoked");
		return;
	case AUTH_UNAVAILABLE:
		conn_close(c, 1011, "database unavailable; retry");
		return;
	case AUTH_INVALID:
	default:
		clog_info(c, "auth failed: %s", why ? why : "invalid token");
		conn_close(c, 4001, "authentication failed");
		return;
	}
	r = rcfg_get();
	maxu = r->max_conn_per_user;
	rcfg_put(r);
	presence_add(c, &id, instance, RELAY_PRESENCE_WAIT_MS);
	/* Welcome first: nothing may overtake it once the user is indexed. */
	auth_welcome(c, &id);
	conn_authenticated(c, id.uid, id.name, id.sid, instance, id.token_exp,
	    id.session_exp, (int)maxu);
	clog_info(c, "authenticated (auth frame)");
	explicit_bzero(&id, sizeof(id));
}

/* `refresh` (PROTOCOL §2): a new token for the same user. */
void
auth_refresh(struct conn *c, json_t *msg, const char *ref)
{
	struct auth_ident	 id;
	const char		*token, *why = NULL;
	json_t			*j;

	if ((token = jsonutil_get_str(msg, "token")) == NULL) {
		cmd_error(c, ref, "bad_request", "\"token\" must be a string");
		return;
	}
	switch (auth_token(token, &id, &why)) {
	case AUTH_OK:
		break;
	case AUTH_UNAVAILABLE:
		cmd_error(c, ref, "unavailable", "database unavailable; retry");
		return;
	default:
		cmd_error(c, ref, "invalid_token", why ? why : "invalid token");
		return;
	}
	if (id.uid != c->uid) {
		cmd_error(c, ref, "forbidden", "the token is for another user");
		explicit_bzero(&id, sizeof(id));
		return;
	}
	conn_reauth(c, id.sid, id.token_exp, id.session_exp);
	j = json_pack("{s:s, s:I}", "type", "refreshed", "token_expires_at",
	    (json_int_t)id.token_exp);
	if (j != NULL && ref != NULL)
		json_object_set_new(j, "ref", json_string(ref));
	cmd_send_json(c, j);
	explicit_bzero(&id, sizeof(id));
}
