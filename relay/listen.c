/*
 * listen.c: the LISTEN connection and its thread.
 *
 * One connection LISTENs on parley_message, parley_member,
 * parley_session and parley_presence (payloads carry ids only;
 * schema/README.md), and on the relays' own parley_read, parley_typing and
 * parley_evict.  Per turn:
 * PQconsumeInput and PQnotifies before every poll (libpq may have buffered
 * notifications while a query ran), then the batch is handled in order:
 * message ids are fetched in batches and fanned out (deliver.c); a
 * membership change updates the cache (group.c) and tells the users; a
 * revoked session closes its sockets with 4011.
 *
 * When the connection breaks, notifications sent meanwhile are gone: the
 * thread reconnects with back-off and jitter, re-LISTENs, and only then
 * catches up from the table (deliver_catch_up), so nothing falls between.
 * /healthz is 503 while it is down.
 *
 * The catch-up selects rows by created_at, which is the database's clock,
 * so the listener keeps that clock: read once per connection right after
 * LISTEN and advanced with the monotonic clock (listen_db_ms).  The time
 * of the loss and of the very first LISTEN are taken from it, never from
 * this host's clock, which may differ from the database's by any amount.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relay.h"

#define LISTEN_FETCH	"parley_relay_listen_fetch"

#define LISTEN_BATCH		500
#define LISTEN_PRUNE_MS		60000
#define LISTEN_IDLE_MAX_MS	(60 * 60 * 1000)

static struct {
	pthread_t	 th;
	int		 started;
	int		 wake[2];
	atomic_int	 up;
	atomic_int	 stop;
	char		*conninfo;
	/* The database's clock: db_base ms (epoch) at mono_base ms. */
	_Atomic int64_t	 db_base, mono_base;
	_Atomic int64_t	 lost_db;	/* at the last loss; 0 before one */
} lis = { .wake = { -1, -1 } };

struct listen_note {
	char	*channel;
	char	*payload;
};

/* Sleep up to ms, or until listen_stop.  1 when stopping. */
static int
listen_sleep(int ms)
{
	struct pollfd	pfd = { lis.wake[0], POLLIN, 0 };

	if (poll(&pfd, 1, ms) > 0 || atomic_load(&lis.stop))
		return 1;
	return 0;
}

/* Fetch message rows by id and deliver them.  -1: connection broke. */
static int
listen_fetch(PGconn *pg, const int64_t *ids, size_t n)
{
	char		*arr, *p;
	const char	*v[1];
	PGresult	*res;
	size_t		 i;
	int		 rc = 0;

	if (n == 0)
		return 0;
	if ((arr = malloc(n * 21 + 3)) == NULL)
		return 0;
	p = arr;
	*p++ = '{';
	for (i = 0; i < n; i++)
		p += sprintf(p, "%s%lld", i ? "," : "", (long long)ids[i]);
	*p++ = '}';
	*p = '\0';
	v[0] = arr;
	res = PQexecPrepared(pg, LISTEN_FETCH, 1, v, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		deliver_rows(pg, res);
	} else {
		log_warnx("listener: fetching %zu messages: %s", n,
		    PQresultErrorMessage(res));
		if (PQstatus(pg) != CONNECTION_OK)
			rc = -1;
	}
	PQclear(res);
	free(arr);
	return rc;
}

struct listen_sid {
	const char	*sid;
	int		 n;
};

static void
listen_revoke_conn(struct conn *c, void *arg)
{
	struct listen_sid	*s = arg;

	if (strcmp(c->sid, s->sid) == 0) {
		conn_close(c, 4011, "session revoked");
		s->n++;
	}
}

static void
listen_revoke_all(struct conn *c, void *arg)
{
	(void)arg;
	conn_close(c, 4011, "session revoked");
}

static void
listen_session(json_t *j)
{
	struct listen_sid	 s;
	const char		*op = jsonutil_get_str(j, "op");
	int64_t			 uid;

	s.sid = jsonutil_get_str(j, "sid");
	s.n = 0;
	if (op != NULL && strcmp(op, "truncate") == 0) {
		/* schema/README.md: treat every session as revoked. */
		log_warnx("listener: parley.sessions truncated: closing every "
		    "connection");
		conn_foreach(listen_revoke_all, NULL);
		return;
	}
	if (op == NULL || strcmp(op, "revoke") != 0 || s.sid == NULL ||
	    jsonutil_get_int(j, "user", &uid) == -1)
		return;
	conn_foreach_user(uid, listen_revoke_conn, &s);
	if (s.n > 0)
		log_info("session of user %lld revoked: %d connection(s) "
		    "closed", (long long)uid, s.n);
}

static void
listen_member(PGconn *pg, json_t *j)
{
	const char	*op = jsonutil_get_str(j, "op"), *ev = NULL;
	int64_t		 gid, uid, *ids = NULL;
	size_t		 n = 0, i;

	if (op != NULL && strcmp(op, "truncate") == 0) {
		log_warnx("listener: parley.group_members truncated");
		group_flush();
		return;
	}
	if (op == NULL || jsonutil_get_int(j, "group", &gid) == -1 ||
	    jsonutil_get_int(j, "user", &uid) == -1)
		return;
	group_notify(op, gid, uid);
	if (strcmp(op, "remove") == 0) {
		/* PROTOCOL §2: delivery of that group stops at once. */
		char conv[RELAY_CONV_MAX];

		snprintf(conv, sizeof(conv), "group:%lld", (long long)gid);
		deliver_backfill_forget(uid, conv);
		deliver_user_json(uid, json_pack("{s:s, s:I}", "type",
		    "removed_from_group", "group", (json_int_t)gid));
		ev = "member_left";
	} else if (strcmp(op, "add") == 0) {
		ev = "member_joined";
	}
	if (ev == NULL || group_members(gid, pg, &ids, &n) == -1)
		return;
	for (i = 0; i < n; i++)
		if (conn_user_online(ids[i]))
			deliver_user_json(ids[i], json_pack("{s:s, s:I, s:I}",
			    "type", ev, "group", (json_int_t)gid,
			    "user", (json_int_t)uid));
	free(ids);
}

/* Handle notifications in order; message ids in batches.  -1: broke. */
static int
listen_batch(PGconn *pg, struct listen_note *v, size_t n)
{
	int64_t		*ids, id;
	size_t		 nid = 0, i;
	json_t		*j;
	const char	*why;
	int		 rc = 0;

	if ((ids = malloc((n ? n : 1) * sizeof(*ids))) == NULL)
		return 0;
	for (i = 0; i < n && rc == 0; i++) {
		metrics_inc(M_NOTIFY);
		j = jsonutil_parse_object(v[i].payload, strlen(v[i].payload), 4,
		    &why);
		if (j == NULL) {
			log_warnx("listener: %s: bad payload: %s", v[i].channel,
			    why);
			continue;
		}
		if (strcmp(v[i].channel, "parley_message") == 0) {
			if (jsonutil_get_int(j, "id", &id) == 0)
				ids[nid++] = id;
			if (nid == LISTEN_BATCH) {
				rc = listen_fetch(pg, ids, nid);
				nid = 0;
			}
		} else {
			/* Messages before a change are delivered before it. */
			rc = listen_fetch(pg, ids, nid);
			nid = 0;
			if (strcmp(v[i].channel, "parley_member") == 0)
				listen_member(pg, j);
			else if (strcmp(v[i].channel, "parley_session") == 0)
				listen_session(j);
			else if (strcmp(v[i].channel, "parley_presence") == 0)
				presence_notify(pg, j);
			else if (strcmp(v[i].channel, "parley_read") == 0)
				convo_notify_read(j);
			else if (strcmp(v[i].channel, "parley_typing") == 0)
				convo_notify_typing(pg, j);
			else if (strcmp(v[i].channel, "parley_evict") == 0)
				presence_evict(j);
		}
		json_decref(j);
	}
	if (rc == 0)
		rc = listen_fetch(pg, ids, nid);
	free(ids);
	return rc;
}

/* Serve one connection until it breaks (-1) or we stop (0). */
static int
listen_loop(PGconn *pg)
{
	struct pollfd		 pfd[2];
	struct listen_note	*v = NULL;
	size_t			 n = 0, cap = 0, i;
	PGnotify		*nt;
	int64_t			 next_prune = util_mono_ms() + LISTEN_PRUNE_MS;
	int			 rc = 0;

	for (;;) {
		if (atomic_load(&lis.stop))
			break;
		if (!PQconsumeInput(pg)) {
			rc = -1;
			break;
		}
		while ((nt = PQnotifies(pg)) != NULL) {
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct listen_note *nv = realloc(v,
				    nc * sizeof(*nv));

				if (nv == NULL) {
					PQfreemem(nt);
					break;
				}
				v = nv;
				cap = nc;
			}
			v[n].channel = strdup(nt->relname);
			v[n].payload = strdup(nt->extra);
			PQfreemem(nt);
			if (v[n].channel == NULL || v[n].payload == NULL) {
				free(v[n].channel);
				free(v[n].payload);
				continue;
			}
			n++;
		}
		if (n > 0) {
			rc = listen_batch(pg, v, n);
			for (i = 0; i < n; i++) {
				free(v[i].channel);
				free(v[i].payload);
			}
			n = 0;
			if (rc == -1)
				break;
			continue;	/* more may have come while we worked */
		}
		if (PQstatus(pg) != CONNECTION_OK) {
			rc = -1;
			break;
		}
		if (util_mono_ms() >= next_prune) {
			deliver_prune(LISTEN_IDLE_MAX_MS);
			group_prune(LISTEN_IDLE_MAX_MS / 6);
			next_prune = util_mono_ms() + LISTEN_PRUNE_MS;
		}
		pfd[0].fd = PQsocket(pg);
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		pfd[1].fd = lis.wake[0];
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		if (poll(pfd, 2, 1000) < 0 && errno != EINTR) {
			log_warn("listener: poll");
			rc = -1;
			break;
		}
		if (pfd[1].revents)
			break;
	}
	free(v);
	return rc;
}

/* LISTEN, then read the database's clock (*db_ms, epoch ms).  0 / -1. */
static int
listen_setup(PGconn *pg, int64_t *db_ms)
{
	PGresult	*res;
	int		 ok;

	res = PQexec(pg, "LISTEN parley_message; LISTEN parley_member; "
	    "LISTEN parley_session; LISTEN parley_presence; "
	    "LISTEN parley_read; LISTEN parley_typing; LISTEN parley_evict");
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		log_warnx("listener: LISTEN: %s", PQresultErrorMessage(res));
	PQclear(res);
	if (!ok)
		return -1;
	/* Prepared once per connection: planned once, not per notification. */
	res = PQprepare(pg, LISTEN_FETCH, "SELECT " DELIVER_COLS
	    " FROM unnest($1::bigint[]) AS i(id) CROSS JOIN LATERAL"
	    " parley.message_get(i.id) g ORDER BY g.conversation, g.seq", 1,
	    NULL);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		log_warnx("listener: prepare: %s", PQresultErrorMessage(res));
	PQclear(res);
	if (!ok)
		return -1;
	res = PQexec(pg, "SELECT floor(extract(epoch FROM clock_timestamp()) "
	    "* 1000)::bigint");
	ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	if (ok)
		*db_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	else
		log_warnx("listener: clock: %s", PQresultErrorMessage(res));
	PQclear(res);
	return ok ? 0 : -1;
}

static void *
listen_main(void *arg)
{
	PGconn		*pg;
	char		 err[256];
	int64_t		 first_db = 0, db_ms = 0;
	int		 ever = 0, backoff = 0, logged = 0, delay;
	uint32_t	 r;

	(void)arg;
	while (!atomic_load(&lis.stop)) {
		pg = db_connect(lis.conninfo, RELAY_PROGNAME "-listen", err,
		    sizeof(err));
		if (pg != NULL && listen_setup(pg, &db_ms) == -1) {
			util_strlcpy(err, PQerrorMessage(pg), sizeof(err));
			err[strcspn(err, "\r\n")] = '\0';
			PQfinish(pg);
			pg = NULL;
		}
		if (pg == NULL) {
			if (!logged)
				log_warnx("listener: %s", err);
			logged = 1;
			backoff = backoff ? backoff * 2 : 100;
			if (backoff > 5000)
				backoff = 5000;
			r = 0;
			(void)util_random(&r, sizeof(r));
			delay = backoff - (int)(r % (uint32_t)(backoff / 4 + 1));
			if (listen_sleep(delay))
				break;
			continue;
		}
		atomic_store(&lis.db_base, db_ms);
		atomic_store(&lis.mono_base, util_mono_ms());
		if (!ever)
			first_db = db_ms;
		group_set_valid(1);
		if (ever && deliver_catch_up(pg, atomic_load(&lis.lost_db),
		    first_db) == -1) {
			group_set_valid(0);
			PQfinish(pg);
			continue;
		}
		atomic_store(&lis.up, 1);
		metrics_inc(M_DB_RECONNECTS);
		log_info("listener: connected%s", ever ? " again" : "");
		ever = 1;
		backoff = 0;
		logged = 0;
		if (listen_loop(pg) == -1) {
			util_strlcpy(err, PQerrorMessage(pg), sizeof(err));
			err[strcspn(err, "\r\n")] = '\0';
			log_warnx("listener: connection lost: %s; reconnecting",
			    err);
		}
		atomic_store(&lis.lost_db, atomic_load(&lis.db_base) +
		    util_mono_ms() - atomic_load(&lis.mono_base));
		atomic_store(&lis.up, 0);
		group_set_valid(0);
		PQfinish(pg);
	}
	return NULL;
}

/* Start the listener thread; see relay.h. */
int
listen_start(const char *conninfo)
{
	if (pipe2(lis.wake, O_CLOEXEC | O_NONBLOCK) == -1)
		return -1;
	if ((lis.conninfo = strdup(conninfo)) == NULL)
		return -1;
	if (pthread_create(&lis.th, NULL, listen_main, NULL) != 0)
		return -1;
	lis.started = 1;
	return 0;
}

/* Stop and join; see relay.h. */
void
listen_stop(void)
{
	if (lis.started) {
		atomic_store(&lis.stop, 1);
		if (write(lis.wake[1], "x", 1) < 0)
			log_warn("listener: wake");
		pthread_join(lis.th, NULL);
		lis.started = 0;
	}
	if (lis.wake[0] >= 0)
		close(lis.wake[0]);
	if (lis.wake[1] >= 0)
		close(lis.wake[1]);
	lis.wake[0] = lis.wake[1] = -1;
	if (lis.conninfo != NULL) {
		explicit_bzero(lis.conninfo, strlen(lis.conninfo));
		free(lis.conninfo);
		lis.conninfo = NULL;
	}
}

/* Is LISTEN up?  See relay.h. */
int
listen_up(void)
{
	return atomic_load(&lis.up);
}

/* The database's clock as the listener knows it; see relay.h. */
int64_t
listen_db_ms(void)
{
	if (!atomic_load(&lis.up))
		return atomic_load(&lis.lost_db);
	return atomic_load(&lis.db_base) + util_mono_ms() -
	    atomic_load(&lis.mono_base);
}
