/*
 * dbpool.c: database worker threads, each with its own self-healing
 * connection (common/db.c) and the relay's prepared statements.
 *
 * Callers queue jobs (struct job) and never wait on libpq themselves,
 * except the handshake, which waits a bounded time for a session check.
 * A database that is down makes jobs fail fast with DB_UNAVAILABLE (their
 * callers answer `error unavailable`, never an ack); idle workers keep
 * probing so /healthz turns 200 again on its own.  The queue is bounded:
 * past it, jobs are dropped with their own `drop` callback.
 *
 * The queue is one list under one mutex, served first come first served.
 * Client commands reach it through their connection's lane (cmd.c), so a
 * connection has at most one job here at a time: its commands run in the
 * order they were sent, and a connection with many waiting cannot crowd
 * out the others.
 *
 * Jobs with a run_batch (messages, post.c) wait in a second list, and a
 * free worker takes all of them at once (group commit).  One batch runs at
 * a time, so while it commits the next messages gather into the next batch
 * instead of each taking a worker and a commit of its own; a lone message
 * on an idle relay still runs at once.  Batches are served before other
 * jobs: they are what clients wait on.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relay.h"

#define DBPOOL_QUEUE_MAX	20000
#define DBPOOL_IDLE_MS		1000
/*
 * Batches running at once.  One: a batch's messages commit before the next
 * batch's, which cmd.c relies on when it sends a lane's waiting messages
 * to the pool together (the batch limits may split them).
 */
#define DBPOOL_BATCHES		1
#define DBPOOL_BATCH_MAX	512	/* jobs per batch */
#define DBPOOL_BATCH_BYTES	(1 << 20)	/* their cost, per batch */

/*
 * Only the schema's functions (schema/README.md), never its tables, so an
 * integrator's redefinition of session_check or is_member is all there is.
 * read and typing also notify the relay-to-relay channels parley_read and
 * parley_typing (convo.c).
 */
static const struct db_stmt dbpool_stmts[] = {
	{ STMT_SESSION,
	  "SELECT user_id, user_name, extract(epoch FROM expires_at)::bigint "
	  "FROM parley.session_check($1::text)", 1 },
	{ STMT_POST,
	  "SELECT id, seq, (extract(epoch FROM created_at) * 1000)::bigint, "
	  "duplicate FROM parley.post_message($1::bigint, $2::text, $3::text, "
	  "$4::text)", 4 },
	{ STMT_POST_BATCH,
	  "SELECT ord, id, seq, (extract(epoch FROM created_at) * 1000)::bigint, "
	  "duplicate, error FROM parley.post_messages($1::json)", 1 },
	{ STMT_HISTORY,
	  "SELECT " DELIVER_COLS " FROM parley.history($1::bigint, $2::text, "
	  "$3::bigint, $4::integer) g", 4 },
	{ STMT_SYNC,
	  "SELECT " DELIVER_COLS " FROM parley.sync_messages($1::bigint, "
	  "$2::jsonb, $3::integer) g", 3 },
	{ STMT_CONVS,
	  "SELECT conversation, last_seq, read_seq, title "
	  "FROM parley.conversation_list($1::bigint)", 1 },
	/* The CTE is evaluated once (mark_read is volatile), then notified. */
	{ STMT_READ,
	  "WITH r AS (SELECT parley.mark_read($1::bigint, $2::text, $3::bigint) "
	  "AS seq) SELECT r.seq, pg_notify('parley_read', json_build_object("
	  "'user', $1::bigint, 'conversation', $2::text, 'seq', r.seq, "
	  "'relay', $4::text, 'conn', $5::bigint)::text) FROM r", 5 },
	{ STMT_TYPING,
	  "SELECT pg_notify('parley_typing', json_build_object('user', "
	  "$1::bigint, 'conversation', $2::text)::text) "
	  "FROM parley.conversation_check($1::bigint, $2::text)", 2 },
	{ STMT_GROUPS,
	  "SELECT id, name, visibility, member, role "
	  "FROM parley.group_list($1::bigint)", 1 },
	{ STMT_JOIN, "SELECT parley.join_group($1::bigint, $2::bigint)", 2 },
	{ STMT_LEAVE, "SELECT parley.leave_group($1::bigint, $2::bigint)", 2 },
	{ STMT_USERS,
	  "SELECT id, name, online FROM parley.user_list($1::bigint, $2::text)",
	  2 },
	/* Deferred delivery (deliver.c): the listener already checked access. */
	{ STMT_AFTER,
	  "SELECT " DELIVER_COLS " FROM parley.messages_after($1::text, "
	  "$2::bigint, $3::integer) g", 3 },
	{ NULL, NULL, 0 }
};

struct dbpool_worker {
	pthread_t	 th;
	struct db	 db;
	atomic_int	 up;
	int		 started;
	int		 was_down;	/* for logging state changes */
};

static struct {
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;
	struct job		*head, *tail;
	size_t			 n;
	struct job		*bhead, *btail;	/* jobs with a run_batch */
	size_t			 bn;
	int			 batches;	/* running */
	int			 stop;
	struct dbpool_worker	*w;
	int			 nw;
} dbpool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL,
	0, NULL, NULL, 0, 0, 0, NULL, 0 };

static int64_t
dbpool_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Timed db_exec; see relay.h. */
int
dbpool_exec(struct db *db, const char *stmt, int nparams,
    const char *const *values, PGresult **res)
{
	int64_t	t0 = dbpool_now_us();
	int	rc;

	rc = db_exec(db, stmt, nparams, values, NULL, NULL, res);
	if (rc != DB_UNAVAILABLE)
		metrics_db_latency_us(dbpool_now_us() - t0);
	return rc;
}

static void
dbpool_note_state(struct dbpool_worker *w, int idx)
{
	int	up = w->db.conn != NULL && PQstatus(w->db.conn) == CONNECTION_OK;

	atomic_store(&w->up, up);
	if (!up && !w->was_down) {
		log_warnx("db worker %d: %s", idx, w->db.err[0] ? w->db.err :
		    "database unavailable");
		w->was_down = 1;
	} else if (up && w->was_down) {
		log_info("db worker %d: connected", idx);
		w->was_down = 0;
	}
}

/* Is there work for a worker?  Under dbpool.mu. */
static int
dbpool_has_work(void)
{
	return dbpool.head != NULL ||
	    (dbpool.bhead != NULL && dbpool.batches < DBPOOL_BATCHES);
}

/*
 * Take the batch-able jobs at the head of the batch list that share the
 * first one's run_batch, within the limits, into v.  Under dbpool.mu.
 */
static size_t
dbpool_take_batch(struct job **v)
{
	struct job	*j;
	size_t		 n = 0, bytes = 0;
	void		(*fn)(struct job **, size_t, struct db *);

	fn = dbpool.bhead->run_batch;
	while ((j = dbpool.bhead) != NULL && j->run_batch == fn &&
	    n < DBPOOL_BATCH_MAX &&
	    (n == 0 || bytes + j->cost <= DBPOOL_BATCH_BYTES)) {
		if ((dbpool.bhead = j->next) == NULL)
			dbpool.btail = NULL;
		j->next = NULL;
		dbpool.bn--;
		bytes += j->cost;
		v[n++] = j;
	}
	return n;
}

static void *
dbpool_main(void *arg)
{
	struct dbpool_worker	*w = arg;
	struct timespec		 ts;
	struct job		*job;
	struct job		**batch;
	size_t			 n;
	int			 idx = (int)(w - dbpool.w);

	if ((batch = calloc(DBPOOL_BATCH_MAX, sizeof(*batch))) == NULL) {
		log_error("db worker %d: out of memory", idx);
		return NULL;
	}
	db_ensure(&w->db);
	dbpool_note_state(w, idx);
	for (;;) {
		pthread_mutex_lock(&dbpool.mu);
		while (!dbpool_has_work() && !dbpool.stop) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += DBPOOL_IDLE_MS / 1000;
			if (pthread_cond_timedwait(&dbpool.cv, &dbpool.mu,
			    &ts) != 0 && !dbpool_has_work()) {
				/* Idle: probe, so health recovers by itself. */
				pthread_mutex_unlock(&dbpool.mu);
				db_ensure(&w->db);
				dbpool_note_state(w, idx);
				pthread_mutex_lock(&dbpool.mu);
			}
		}
		if (!dbpool_has_work()) {	/* stopping */
			pthread_mutex_unlock(&dbpool.mu);
			break;
		}
		if (dbpool.bhead != NULL && dbpool.batches < DBPOOL_BATCHES) {
			n = dbpool_take_batch(batch);
			dbpool.batches++;
			if (dbpool_has_work())	/* a signal may have been ours */
				pthread_cond_signal(&dbpool.cv);
			pthread_mutex_unlock(&dbpool.mu);

			batch[0]->run_batch(batch, n, &w->db);
			dbpool_note_state(w, idx);

			pthread_mutex_lock(&dbpool.mu);
			dbpool.batches--;
			if (dbpool.bhead != NULL)	/* for an idle worker */
				pthread_cond_signal(&dbpool.cv);
			pthread_mutex_unlock(&dbpool.mu);
			continue;
		}
		job = dbpool.head;
		if ((dbpool.head = job->next) == NULL)
			dbpool.tail = NULL;
		dbpool.n--;
		if (dbpool_has_work())
			pthread_cond_signal(&dbpool.cv);
		pthread_mutex_unlock(&dbpool.mu);

		job->next = NULL;
		job->run(job, &w->db);
		dbpool_note_state(w, idx);
	}
	free(batch);
	return NULL;
}

/* Start the workers; see relay.h. */
int
dbpool_start(const char *conninfo, int n)
{
	int	i;

	if ((dbpool.w = calloc((size_t)n, sizeof(*dbpool.w))) == NULL)
		return -1;
	dbpool.nw = n;
	for (i = 0; i < n; i++)
		if (db_init(&dbpool.w[i].db, conninfo, RELAY_PROGNAME,
		    dbpool_stmts) == -1)
			return -1;
	for (i = 0; i < n; i++) {
		if (pthread_create(&dbpool.w[i].th, NULL, dbpool_main,
		    &dbpool.w[i]) != 0) {
			log_error("db pool: cannot start thread");
			return -1;
		}
		dbpool.w[i].started = 1;
	}
	return 0;
}

/* Stop: run nothing more, drop what is queued, join; see relay.h. */
void
dbpool_stop(void)
{
	struct job	*job, *bjob, *next;
	int		 i;

	pthread_mutex_lock(&dbpool.mu);
	dbpool.stop = 1;
	job = dbpool.head;
	dbpool.head = dbpool.tail = NULL;
	dbpool.n = 0;
	bjob = dbpool.bhead;
	dbpool.bhead = dbpool.btail = NULL;
	dbpool.bn = 0;
	pthread_cond_broadcast(&dbpool.cv);
	pthread_mutex_unlock(&dbpool.mu);
	for (; job != NULL; job = next) {
		next = job->next;
		job->drop(job);
	}
	for (; bjob != NULL; bjob = next) {
		next = bjob->next;
		bjob->drop(bjob);
	}
	for (i = 0; i < dbpool.nw; i++)
		if (dbpool.w[i].started)
			pthread_join(dbpool.w[i].th, NULL);
	for (i = 0; i < dbpool.nw; i++)
		db_destroy(&dbpool.w[i].db);
	free(dbpool.w);
	dbpool.w = NULL;
	dbpool.nw = 0;
}

/* Queue jobs, all or none; see relay.h. */
int
dbpool_try_submit_many(struct job **v, size_t n)
{
	int64_t	now = util_mono_ms();
	size_t	i;
	int	full, wake = 0;

	pthread_mutex_lock(&dbpool.mu);
	full = dbpool.stop || dbpool.n + dbpool.bn + n > DBPOOL_QUEUE_MAX;
	for (i = 0; !full && i < n; i++) {
		struct job *job = v[i];

		job->next = NULL;
		job->queued_ms = now;
		if (job->run_batch != NULL) {
			if (dbpool.btail != NULL)
				dbpool.btail->next = job;
			else
				dbpool.bhead = job;
			dbpool.btail = job;
			dbpool.bn++;
			wake |= dbpool.batches < DBPOOL_BATCHES;
		} else {
			if (dbpool.tail != NULL)
				dbpool.tail->next = job;
			else
				dbpool.head = job;
			dbpool.tail = job;
			dbpool.n++;
			wake = 1;
		}
	}
	if (wake)
		pthread_cond_signal(&dbpool.cv);
	pthread_mutex_unlock(&dbpool.mu);
	if (full)
		log_warnx_ratelimited(10, "db pool: queue full, job dropped");
	return full ? -1 : 0;
}

/* Queue a job, or leave it to the caller; see relay.h. */
int
dbpool_try_submit(struct job *job)
{
	return dbpool_try_submit_many(&job, 1);
}

/* Queue a job; see relay.h. */
void
dbpool_submit(struct job *job)
{
	if (dbpool_try_submit(job) == -1)
		job->drop(job);
}

/* Are all pool connections up?  See relay.h. */
int
dbpool_healthy(void)
{
	int	i;

	if (dbpool.nw == 0)
		return 0;
	for (i = 0; i < dbpool.nw; i++)
		if (!atomic_load(&dbpool.w[i].up))
			return 0;
	return 1;
}
