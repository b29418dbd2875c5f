/*
 * presence.c: who is online across the cluster.
 *
 * One thread with its own database connection keeps this relay's rows:
 * parley.relay_register at start, one parley.connection_open /
 * connection_remove per authenticated connection, in the order they
 * happened (a single queue, so a remove never overtakes its add), and
 * every half WS_HEARTBEAT_INTERVAL parley.relay_heartbeat and
 * parley.sweep_stale_relays(2 x WS_HEARTBEAT_INTERVAL), so that the rows
 * of a relay that died go, which the schema's trigger turns into
 * parley_presence notifications.  The bound (PROTOCOL §2: a dead relay's
 * users go offline within 3 intervals): its last heartbeat is at most the
 * moment it died, it is stale 2 intervals later, and the next sweep by
 * any live relay comes at most half an interval after that.  A live relay
 * is swept only when it has not beaten for 2 intervals, i.e. its beats
 * are 1.5 intervals late; a long queue of connection rows does not delay
 * them (a beat that falls due is run between two rows).
 * (sweep_stale_relays does not count the time the database itself was
 * down: after a restart the relays get two intervals to beat again before
 * anyone is swept.)  The listener
 * (listen.c) hands those to presence_notify, which sends `presence` events
 * to this relay's connections (every user with PARLEY_PRESENCE_SCOPE=all,
 * the user's contacts with `contacts`).
 *
 * Whenever the rows may have drifted (a database outage, a heartbeat
 * answering that the relay was swept, a queue too far behind), the queue is
 * dropped and the registry is stated in one statement,
 * parley.relay_sync_connections, which changes only the rows that differ
 * and adds before it removes: users whose connections stayed up see no
 * offline/online flap.
 *
 * A new connection's row is written before its `welcome` (the caller waits,
 * briefly and only while registered), so that a user's other connection
 * closing at that moment never reports the user offline.
 *
 * parley.connection_open also applies client_instance replacement and the
 * per-user cap across the cluster: it names the connections to close in
 * parley_evict notifications, which the listener of the relay holding
 * them acts on (presence_evict, 4009).
 */
#include "config.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relay.h"

#define PRESENCE_QUEUE_MAX	100000
#define PRESENCE_RETRY_MS	1000
#define PRESENCE_BYE_MS		1000	/* unregister at exit, at most */
/* Beat and sweep every half heartbeat interval; stale after two. */
#define PRESENCE_BEAT_MS(hb)	((hb) / 2)
#define PRESENCE_STALE_MS(hb)	(2 * (hb))

enum presence_kind { PRESENCE_ADD, PRESENCE_DEL };

struct presence_op {
	struct presence_op	*next;
	enum presence_kind	 kind;
	uint64_t		 conn_id;
	int64_t			 uid;
	char			 sid[128];
	char			 instance[RELAY_INSTANCE_MAX + 1];
	int			 max;		/* PARLEY_MAX_CONN_PER_USER (add) */
	int			 waiting;	/* a caller waits for it (under mu) */
	int			 done;
	int			 abandoned;	/* the caller gave up: we free */
};

static const struct db_stmt presence_stmts[] = {
	{ STMT_REGISTER, "SELECT parley.relay_register($1::text)", 1 },
	{ STMT_HEARTBEAT, "SELECT parley.relay_heartbeat($1::text)", 1 },
	{ STMT_SWEEP, "SELECT parley.sweep_stale_relays($1::interval)", 1 },
	{ STMT_RESYNC, "SELECT parley.relay_sync_connections($1::text, "
	  "$2::jsonb)", 2 },
	{ STMT_CONN_ADD, "SELECT parley.connection_open($1::text, $2::bigint, "
	  "$3::bigint, $4::text, $5::text, $6::integer)", 6 },
	{ STMT_CONN_DEL, "SELECT parley.connection_remove($1::text, $2::bigint)",
	  2 },
	{ STMT_UNREGISTER, "SELECT parley.relay_unregister($1::text)", 1 },
	{ NULL, NULL, 0 }
};

static struct {
	pthread_t		 th;
	int			 started;
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;
	pthread_cond_t		 done_cv;	/* ops done (waiting callers) */
	struct presence_op	*head, *tail;
	size_t			 n;
	int			 stop;
	int			 resync;
	atomic_int		 up;
	struct db		 db;
} pr = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Done with ops: free them, or hand them back to waiting callers; mu held. */
static void
presence_release_locked(struct presence_op *op)
{
	struct presence_op	*next;

	for (; op != NULL; op = next) {
		next = op->next;
		if (op->waiting && !op->abandoned) {
			op->done = 1;
			continue;
		}
		explicit_bzero(op->sid, sizeof(op->sid));
		free(op);
	}
	pthread_cond_broadcast(&pr.done_cv);
}

static void
presence_release(struct presence_op *op)
{
	pthread_mutex_lock(&pr.mu);
	presence_release_locked(op);
	pthread_mutex_unlock(&pr.mu);
}

/* Queue an op and, when wait_ms > 0 and registered, wait for it. */
static void
presence_enqueue(struct presence_op *op, int wait_ms)
{
	struct timespec	ts;

	pthread_mutex_lock(&pr.mu);
	if (!pr.started || pr.stop) {
		pthread_mutex_unlock(&pr.mu);
		free(op);
		return;
	}
	if (pr.n >= PRESENCE_QUEUE_MAX) {
		/* Too far behind: start over from the registry. */
		presence_release_locked(pr.head);
		pr.head = pr.tail = NULL;
		pr.n = 0;
		pr.resync = 1;
		pthread_cond_signal(&pr.cv);
		pthread_mutex_unlock(&pr.mu);
		free(op);
		return;
	}
	op->next = NULL;
	op->waiting = wait_ms > 0 && atomic_load(&pr.up);
	if (pr.tail != NULL)
		pr.tail->next = op;
	else
		pr.head = op;
	pr.tail = op;
	pr.n++;
	pthread_cond_signal(&pr.cv);
	if (op->waiting) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += wait_ms / 1000;
		ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!op->done)
			if (pthread_cond_timedwait(&pr.done_cv, &pr.mu, &ts) != 0)
				break;
		if (op->done) {
			explicit_bzero(op->sid, sizeof(op->sid));
			free(op);
		} else {
			op->abandoned = 1;
		}
	}
	pthread_mutex_unlock(&pr.mu);
}

/* An authenticated connection opens; see relay.h. */
void
presence_add(struct conn *c, const struct auth_ident *id,
    const char *instance, int wait_ms)
{
	struct presence_op	*op;
	struct rcfg		*r;

	if ((op = calloc(1, sizeof(*op))) == NULL)
		return;
	op->kind = PRESENCE_ADD;
	op->conn_id = c->id;
	op->uid = id->uid;
	util_strlcpy(op->sid, id->sid, sizeof(op->sid));
	util_strlcpy(op->instance, instance, sizeof(op->instance));
	r = rcfg_get();
	op->max = (int)r->max_conn_per_user;
	rcfg_put(r);
	c->presence = 1;
	presence_enqueue(op, wait_ms);
}

/* An authenticated connection closed; see relay.h. */
void
presence_remove(struct conn *c)
{
	struct presence_op	*op;

	if ((op = calloc(1, sizeof(*op))) == NULL)
		return;
	op->kind = PRESENCE_DEL;
	op->conn_id = c->id;
	presence_enqueue(op, 0);
}

/* Run one operation.  DB_* result; duplicates (23505) count as done. */
static int
presence_exec(struct presence_op *op)
{
	const char	*v[6];
	char		 id[24], uid[24], max[16];
	PGresult	*res = NULL;
	int		 rc;

	snprintf(id, sizeof(id), "%llu", (unsigned long long)op->conn_id);
	snprintf(uid, sizeof(uid), "%lld", (long long)op->uid);
	snprintf(max, sizeof(max), "%d", op->max);
	v[0] = rcfg_boot.relay_id;
	v[1] = id;
	if (op->kind == PRESENCE_ADD) {
		v[2] = uid;
		v[3] = op->sid;
		v[4] = op->instance[0] != '\0' ? op->instance : NULL;
		v[5] = max;
		rc = dbpool_exec(&pr.db, STMT_CONN_ADD, 6, v, &res);
	} else {
		rc = dbpool_exec(&pr.db, STMT_CONN_DEL, 2, v, &res);
	}
	PQclear(res);
	if (rc == DB_ERROR) {
		if (strcmp(pr.db.sqlstate, "23505") != 0 &&
		    strcmp(pr.db.sqlstate, "23503") != 0)
			log_warnx("presence: %s", pr.db.err);
		rc = DB_OK;
	}
	return rc;
}

/* Registry read lock held: one {"c","u","s","i"} per open connection. */
static void
presence_snap_conn(struct conn *c, void *arg)
{
	json_t	*arr = arg, *o;
	int	 open;

	pthread_mutex_lock(&c->mu);
	open = c->state == CONN_OPEN;
	pthread_mutex_unlock(&c->mu);
	if (!c->indexed || !open || !c->presence)
		return;
	o = json_pack("{s:I, s:I, s:s}", "c", (json_int_t)c->id,
	    "u", (json_int_t)c->uid, "s", c->sid);
	if (o != NULL && c->instance[0] != '\0')
		json_object_set_new(o, "i", json_string(c->instance));
	if (o != NULL)
		json_array_append_new(arr, o);
}

/*
 * Register, then make this relay's rows match the registry (first time:
 * after dropping whatever a previous process under the same id left).
 * 0 / -1.
 */
static int
presence_register(int first)
{
	const char	*v[2] = { rcfg_boot.relay_id, NULL };
	PGresult	*res = NULL;
	json_t		*arr;
	char		*txt = NULL;
	int		 rc;

	if (first) {
		rc = dbpool_exec(&pr.db, STMT_REGISTER, 1, v, &res);
		PQclear(res);
		res = NULL;
		if (rc != DB_OK) {
			if (rc == DB_ERROR)
				log_warnx("presence: %s", pr.db.err);
			return -1;
		}
	}
	if ((arr = json_array()) == NULL)
		return -1;
	conn_foreach(presence_snap_conn, arr);
	txt = jsonutil_dump(arr);
	json_decref(arr);
	if (txt == NULL)
		return -1;
	v[1] = txt;
	rc = dbpool_exec(&pr.db, STMT_RESYNC, 2, v, &res);
	explicit_bzero(txt, strlen(txt));
	free(txt);
	if (rc != DB_OK) {
		if (rc == DB_ERROR)
			log_warnx("presence: %s", pr.db.err);
		PQclear(res);
		return -1;
	}
	log_info("presence: relay %s registered (%s row(s) changed)",
	    rcfg_boot.relay_id, PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) :
	    "?");
	PQclear(res);
	return 0;
}

/* Heartbeat and sweep.  0, or -1 when registration must be redone. */
static int
presence_beat(int64_t heartbeat_ms)
{
	const char	*v[1];
	char		 stale[48];
	PGresult	*res = NULL;
	int		 rc, alive;

	v[0] = rcfg_boot.relay_id;
	if ((rc = dbpool_exec(&pr.db, STMT_HEARTBEAT, 1, v, &res)) != DB_OK) {
		PQclear(res);
		return -1;
	}
	alive = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!alive) {
		log_warnx("presence: this relay was swept; registering again");
		return -1;
	}
	snprintf(stale, sizeof(stale), "%lld milliseconds",
	    (long long)PRESENCE_STALE_MS(heartbeat_ms));
	v[0] = stale;
	if (dbpool_exec(&pr.db, STMT_SWEEP, 1, v, &res) == DB_OK &&
	    PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "0") != 0)
		log_info("presence: swept %s dead relay(s)", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* At exit: remove this relay's rows, waiting at most PRESENCE_BYE_MS. */
static void
presence_bye(void)
{
	const char	*v[1] = { rcfg_boot.relay_id };
	struct pollfd	 pfd;
	PGresult	*res;
	int64_t		 deadline = util_mono_ms() + PRESENCE_BYE_MS;
	PGconn		*pg = pr.db.conn;

	if (pg == NULL || PQstatus(pg) != CONNECTION_OK ||
	    !PQsendQueryPrepared(pg, STMT_UNREGISTER, 1, v, NULL, NULL, 0))
		return;
	while (PQisBusy(pg)) {
		int64_t left = deadline - util_mono_ms();

		pfd.fd = PQsocket(pg);
		pfd.events = POLLIN;
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0 ||
		    !PQconsumeInput(pg))
			return;		/* the rows go with the sweep */
	}
	while ((res = PQgetResult(pg)) != NULL)
		PQclear(res);
}

/* Is the idle presence connection still there?  (Reads what the server
 * sent: a shutdown's FATAL message and the end of the stream.) */
static int
presence_conn_alive(void)
{
	PGconn	*pg = pr.db.conn;

	return pg != NULL && PQconsumeInput(pg) &&
	    PQstatus(pg) == CONNECTION_OK;
}

static void *
presence_main(void *arg)
{
	struct presence_op	*ops, *op;
	struct timespec		 ts;
	struct rcfg		*r;
	int64_t			 now, next_beat = 0, wait_ms, hb;
	int			 registered = 0, ever = 0, rc;

	(void)arg;
	pthread_mutex_lock(&pr.mu);
	while (!pr.stop) {
		r = rcfg_get();
		hb = r->heartbeat_ms;
		rcfg_put(r);
		now = util_mono_ms();
		if (!registered || pr.resync) {
			/* The queue is rebuilt from the registry. */
			presence_release_locked(pr.head);
			pr.head = pr.tail = NULL;
			pr.n = 0;
			pr.resync = 0;
			pthread_mutex_unlock(&pr.mu);
			registered = presence_register(!ever) == 0;
			if (registered)
				ever = 1;
			atomic_store(&pr.up, registered);
			next_beat = util_mono_ms() + PRESENCE_BEAT_MS(hb);
			pthread_mutex_lock(&pr.mu);
			if (!registered) {
				clock_gettime(CLOCK_MONOTONIC, &ts);
				ts.tv_sec += PRESENCE_RETRY_MS / 1000;
				pthread_cond_timedwait(&pr.cv, &pr.mu, &ts);
			}
			continue;
		}
		if (pr.head == NULL && now < next_beat) {
			/* Idle: look at the connection every second or so, so
			 * a database restart is noticed (and the rows stated
			 * again) in about that time, not a heartbeat later. */
			wait_ms = next_beat - now;
			if (wait_ms > PRESENCE_RETRY_MS)
				wait_ms = PRESENCE_RETRY_MS;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += wait_ms / 1000;
			ts.tv_nsec += (wait_ms % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&pr.cv, &pr.mu, &ts);
			if (pr.head == NULL && !pr.stop) {
				pthread_mutex_unlock(&pr.mu);
				if (!presence_conn_alive()) {
					log_warnx("presence: database connection "
					    "lost");
					db_disconnect(&pr.db);
					registered = 0;
					atomic_store(&pr.up, 0);
				}
				pthread_mutex_lock(&pr.mu);
			}
			continue;
		}
		ops = pr.head;
		pr.head = pr.tail = NULL;
		pr.n = 0;
		pthread_mutex_unlock(&pr.mu);

		rc = DB_OK;
		for (op = ops; rc == DB_OK; op = op->next) {
			/* A beat that falls due goes between two rows. */
			if (util_mono_ms() >= next_beat) {
				rc = presence_beat(hb) == 0 ? DB_OK :
				    DB_UNAVAILABLE;
				next_beat = util_mono_ms() + PRESENCE_BEAT_MS(hb);
			}
			if (op == NULL || rc != DB_OK)
				break;
			rc = presence_exec(op);
		}
		presence_release(ops);
		if (rc != DB_OK) {
			registered = 0;
			atomic_store(&pr.up, 0);
		}
		pthread_mutex_lock(&pr.mu);
	}
	pthread_mutex_unlock(&pr.mu);
	if (registered)
		presence_bye();
	return NULL;
}

/* Start the presence thread; see relay.h. */
int
presence_start(const char *conninfo)
{
	pthread_condattr_t	ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pr.cv, &ca);
	pthread_cond_init(&pr.done_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (db_init(&pr.db, conninfo, RELAY_PROGNAME "-presence",
	    presence_stmts) == -1)
		return -1;
	pthread_mutex_lock(&pr.mu);
	pr.started = 1;
	pthread_mutex_unlock(&pr.mu);
	if (pthread_create(&pr.th, NULL, presence_main, NULL) != 0) {
		pr.started = 0;
		return -1;
	}
	return 0;
}

/* Stop: unregister (bounded) and join; see relay.h. */
void
presence_stop(void)
{
	int	started;

	pthread_mutex_lock(&pr.mu);
	started = pr.started;
	pr.stop = 1;
	pthread_cond_broadcast(&pr.cv);
	pthread_mutex_unlock(&pr.mu);
	if (!started)
		return;
	pthread_join(pr.th, NULL);
	presence_release(pr.head);
	pr.head = pr.tail = NULL;
	db_destroy(&pr.db);
	pthread_cond_destroy(&pr.cv);
	pthread_cond_destroy(&pr.done_cv);
	pr.started = 0;
}

/* Is this relay registered with the presence connection up? */
int
presence_healthy(void)
{
	return atomic_load(&pr.up);
}

/* ---------------------------------------------------------------- events */

struct presence_evt {
	int64_t		 uid;
	struct frame	*f;
};

static void
presence_to_conn(struct conn *c, void *arg)
{
	struct presence_evt	*e = arg;

	if (c->indexed && c->uid != e->uid)
		outq_send(c, e->f);
}

/* parley_presence {op, user}; see relay.h. */
void
presence_notify(PGconn *pg, json_t *n)
{
	struct presence_evt	 e;
	const char		*op = jsonutil_get_str(n, "op");
	const char		*v[1];
	char			 u[24], *s;
	struct rcfg		*r;
	PGresult		*res;
	json_t			*j;
	int			 contacts, i;

	if (op == NULL || jsonutil_get_int(n, "user", &e.uid) == -1 ||
	    (strcmp(op, "online") != 0 && strcmp(op, "offline") != 0))
		return;
	j = json_pack("{s:s, s:I, s:b}", "type", "presence", "user",
	    (json_int_t)e.uid, "online", strcmp(op, "online") == 0);
	s = jsonutil_dump(j);
	json_decref(j);
	if (s == NULL)
		return;
	e.f = outq_frame(0x1, s, strlen(s));
	free(s);
	if (e.f == NULL)
		return;
	r = rcfg_get();
	contacts = r->presence_contacts;
	rcfg_put(r);
	if (!contacts) {
		conn_foreach(presence_to_conn, &e);
	} else {
		snprintf(u, sizeof(u), "%lld", (long long)e.uid);
		v[0] = u;
		res = PQexecParams(pg, "SELECT parley.contact_ids($1::bigint)",
		    1, NULL, v, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK) {
			for (i = 0; i < PQntuples(res); i++)
				conn_foreach_user(strtoll(PQgetvalue(res, i, 0),
				    NULL, 10), presence_to_conn, &e);
		} else {
			log_warnx("presence: contact_ids: %s",
			    PQresultErrorMessage(res));
		}
		PQclear(res);
	}
	outq_frame_unref(e.f);
}

/* ---------------------------------------------------------------- eviction */

struct presence_victim {
	uint64_t	 conn_id;
	const char	*reason;
};

static void
presence_evict_conn(struct conn *c, void *arg)
{
	struct presence_victim	*v = arg;

	if (c->id == v->conn_id)
		conn_close(c, 4009, v->reason);
}

/* parley_evict {relay, conn, user, reason}; see relay.h. */
void
presence_evict(json_t *n)
{
	struct presence_victim	 v;
	const char		*relay = jsonutil_get_str(n, "relay");
	const char		*reason = jsonutil_get_str(n, "reason");
	int64_t			 uid, conn;

	if (relay == NULL || strcmp(relay, rcfg_boot.relay_id) != 0 ||
	    jsonutil_get_int(n, "user", &uid) == -1 ||
	    jsonutil_get_int(n, "conn", &conn) == -1 || conn <= 0)
		return;
	v.conn_id = (uint64_t)conn;
	/* A fixed text, not the payload's: it goes into the close frame. */
	v.reason = reason != NULL && strcmp(reason, "replaced") == 0 ?
	    "replaced" : "too many connections";
	conn_foreach_user(uid, presence_evict_conn, &v);
}

/* ---------------------------------------------------------------- user_list */

static void
presence_users_run(struct job *job, struct db *db)
{
	struct cmd_job	*cj = (struct cmd_job *)job;
	const char	*v[2];
	char		 a[24];
	struct rcfg	*r;
	PGresult	*res = NULL;
	json_t		*arr;
	int		 rc, i;

	if ((rc = cmd_job_park(cj)) == 1)
		return;			/* runs again when output drained */
	if (rc == -1)
		goto done;
	r = rcfg_get();
	v[1] = r->presence_contacts ? "contacts" : "all";
	rcfg_put(r);
	snprintf(a, sizeof(a), "%lld", (long long)cj->uid);
	v[0] = a;
	if ((rc = dbpool_exec(db, STMT_USERS, 2, v, &res)) != DB_OK) {
		cmd_job_dberr(cj, db, rc);
		goto done;
	}
	if ((arr = json_array()) == NULL)
		goto done;
	for (i = 0; i < PQntuples(res); i++)
		json_array_append_new(arr, json_pack("{s:I, s:s, s:b}",
		    "id", (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10),
		    "name", PQgetvalue(res, i, 1),
		    "online", strcmp(PQgetvalue(res, i, 2), "t") == 0));
	cmd_job_reply_bulk(cj, json_pack("{s:s, s:o}", "type", "user_list",
	    "users", arr));
done:
	PQclear(res);
	cmd_job_free(cj);
}

/* `user_list`; see relay.h. */
void
presence_user_list(struct conn *c, json_t *msg, const char *ref)
{
	struct cmd_job	*cj;

	(void)msg;
	if ((cj = cmd_job_new(c, ref, sizeof(*cj), presence_users_run)) != NULL)
		cmd_job_submit(cj);
}
