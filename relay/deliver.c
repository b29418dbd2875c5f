/*
 * deliver.c: fan-out of stored messages to this relay's connections.
 *
 * Runs on the listener thread.  Each message row becomes one encoded frame
 * (shared by all its recipients) queued to every local connection of every
 * recipient: both users of a direct conversation, every member of a group
 * (group.c), including the sender's other connections but not the one it
 * was sent on, which gets the ack instead (PROTOCOL §2 "Details").  The
 * sending connection is recognised by the client_id it registered before
 * the insert (deliver_expect), which is race-free against the listener;
 * those expectations are kept while the listener is away, for its
 * catch-up.
 *
 * Order: notifications arrive in commit order, and seq is assigned in
 * commit order, so delivering rows as they come keeps each conversation in
 * seq order.  The last seq delivered per conversation is remembered; a row
 * at or below it is a duplicate (skipped), a row above it + 1 means
 * notifications were lost, and the gap is fetched from the table first.
 *
 * Exactly once per connection: every connection that was open when the
 * listener handled seq N of a conversation got it (or the ack), and one
 * that opened later had it committed before it opened, so "the last seq
 * delivered" is also what each connection has been sent, with one
 * exception: a `sync` reply reads the table and can run ahead of the
 * listener (while it is away, or by a few milliseconds while it is
 * behind).  The sync tells us what it queued (deliver_mark_locked); the
 * connection keeps those seqs, per conversation, until the listener has
 * gone past them, and the listener skips them for that connection.  So
 * after the LISTEN connection was lost, the catch-up delivers to each
 * connection exactly the rows it has not been sent yet, by seq per
 * conversation: the rows after the last seq the listener delivered, minus
 * what a sync already gave that connection, minus the sender's own.  It
 * reads what was created since shortly before the loss (DELIVER_MARGIN_MS,
 * on the database's clock), never before the listener first listened:
 * rows committed before that were never live here.
 *
 * Catch-up (after the LISTEN connection was lost) and gap fills can be
 * large bursts the relay makes itself, so their frames are bulk output
 * (outq.c): not counted toward PARLEY_SEND_QUEUE.  A connection whose bulk
 * output is already at the high mark gets that conversation deferred
 * instead: the listener only notes the highest seq it hands over (and
 * every later message of the conversation, live or not, follows the same
 * way, so the order holds), and a backfill job of the connection's own
 * fetches those rows from the table at the client's pace, then hands the
 * conversation back to live delivery.  The listener decides who receives
 * what, in commit order; the backfill never goes past what it was handed.
 * A connection that falls RELAY_BACKFILL_LAG messages behind that way is a
 * slow consumer like any other (4030).
 *
 * Locks: the table of conversations is the listener's; deliver_mu guards
 * its structure and last_seq against the sync's reads (taken inside
 * conn->mu there, never the other way round).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

#define DELIVER_BUCKETS		4096
/* Every message a connection may have waiting in its lane, and then some. */
#define DELIVER_EXPECT_MAX	(RELAY_LANE_MAX + 24)
#define DELIVER_MARGIN_MS	60000	/* catch-up looks this far before the loss */
#define DELIVER_PAGE		500
#define DELIVER_MARK_GROW	8	/* first allocation of c->mk */

struct deliver_conv {
	char			 conv[RELAY_CONV_MAX];
	int64_t			 last_seq;
	int64_t			 used_ms;
	struct deliver_conv	*next;
};

/*
 * Written by the listener thread only, under deliver_mu; the listener reads
 * without it, other threads (deliver_mark_locked) with it.
 */
static pthread_mutex_t		 deliver_mu = PTHREAD_MUTEX_INITIALIZER;
static struct deliver_conv	*deliver_tab[DELIVER_BUCKETS];
static int			 deliver_catching_up;	/* frames are bulk */

static size_t
deliver_hash(const char *s)
{
	uint64_t	h = 1469598103934665603ull;

	while (*s != '\0')
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return (size_t)(h % DELIVER_BUCKETS);
}

/* The listener delivered conv up to seq (listener thread). */
static void
deliver_conv_set(struct deliver_conv *e, int64_t seq)
{
	pthread_mutex_lock(&deliver_mu);
	e->last_seq = seq;
	pthread_mutex_unlock(&deliver_mu);
}

static struct deliver_conv *
deliver_conv_get(const char *conv, int create)
{
	struct deliver_conv	*e;
	size_t			 b = deliver_hash(conv);

	for (e = deliver_tab[b]; e != NULL; e = e->next)
		if (strcmp(e->conv, conv) == 0)
			return e;
	if (!create || strlen(conv) >= sizeof(e->conv) ||
	    (e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	util_strlcpy(e->conv, conv, sizeof(e->conv));
	e->last_seq = -1;	/* unknown */
	pthread_mutex_lock(&deliver_mu);
	e->next = deliver_tab[b];
	deliver_tab[b] = e;
	pthread_mutex_unlock(&deliver_mu);
	return e;
}

/* Forget every conversation at exit. */
void
deliver_fini(void)
{
	struct deliver_conv	*e, *next;
	size_t			 i;

	pthread_mutex_lock(&deliver_mu);
	for (i = 0; i < DELIVER_BUCKETS; i++) {
		for (e = deliver_tab[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
		deliver_tab[i] = NULL;
	}
	pthread_mutex_unlock(&deliver_mu);
}

/* Forget conversations idle for max_idle_ms; see relay.h. */
void
deliver_prune(int64_t max_idle_ms)
{
	struct deliver_conv	**pp, *e;
	int64_t			  now = util_mono_ms();
	size_t			  i;

	pthread_mutex_lock(&deliver_mu);
	for (i = 0; i < DELIVER_BUCKETS; i++) {
		pp = &deliver_tab[i];
		while ((e = *pp) != NULL) {
			if (now - e->used_ms > max_idle_ms) {
				*pp = e->next;
				free(e);
			} else {
				pp = &e->next;
			}
		}
	}
	pthread_mutex_unlock(&deliver_mu);
}

/* ---------------------------------------------------------------- expectations */

static int
deliver_take_locked(struct conn *c, const char *cid)
{
	size_t	i;

	for (i = 0; i < c->nexpect; i++)
		if (strcmp(c->expect[i].client_id, cid) == 0) {
			c->expect[i] = c->expect[--c->nexpect];
			if (c->nexpect == 0 && c->capexpect > 8) {
				/* A burst is over: give its room back. */
				free(c->expect);
				c->expect = NULL;
				c->capexpect = 0;
			}
			return 1;
		}
	return 0;
}

/* Remember that c sent cid; see relay.h. */
void
deliver_expect(struct conn *c, const char *cid)
{
	pthread_mutex_lock(&c->mu);
	if (c->nexpect == c->capexpect && c->capexpect < DELIVER_EXPECT_MAX) {
		/* Grown as needed: most connections send little. */
		size_t nc = c->capexpect ? c->capexpect * 2 : 8;
		struct conn_expect *ne;

		if (nc > DELIVER_EXPECT_MAX)
			nc = DELIVER_EXPECT_MAX;
		if ((ne = realloc(c->expect, nc * sizeof(*ne))) != NULL) {
			c->expect = ne;
			c->capexpect = nc;
		}
	}
	if (c->expect != NULL) {
		if (c->nexpect == c->capexpect) {
			/* Forget the oldest: at worst it is echoed once. */
			size_t i, old = 0;

			for (i = 1; i < c->nexpect; i++)
				if (c->expect[i].at_ms < c->expect[old].at_ms)
					old = i;
			c->expect[old] = c->expect[--c->nexpect];
		}
		util_strlcpy(c->expect[c->nexpect].client_id, cid,
		    sizeof(c->expect[0].client_id));
		c->expect[c->nexpect++].at_ms = util_mono_ms();
	}
	pthread_mutex_unlock(&c->mu);
}

/* Forget that c sent cid (duplicate, error); see relay.h. */
void
deliver_unexpect(struct conn *c, const char *cid)
{
	pthread_mutex_lock(&c->mu);
	deliver_take_locked(c, cid);
	pthread_mutex_unlock(&c->mu);
}

/* Drop old expectations; see relay.h. */
void
deliver_expire(struct conn *c, int64_t now, int64_t max_age_ms)
{
	size_t	i;

	/* While the listener is away its catch-up still needs them. */
	if (!listen_up())
		return;
	pthread_mutex_lock(&c->mu);
	for (i = 0; i < c->nexpect;)
		if (now - c->expect[i].at_ms > max_age_ms)
			c->expect[i] = c->expect[--c->nexpect];
		else
			i++;
	pthread_mutex_unlock(&c->mu);
}

/* ---------------------------------------------------------------- fan-out */

struct deliver_ctx {
	struct frame	*f;
	int64_t		 sender;
	const char	*client_id;
	const char	*conv;
	int64_t		 seq;
	int		 queued;
	struct conn	**spawn;	/* need a backfill job (refs held) */
	size_t		 nspawn, capspawn;
};

/* ---------------------------------------------------------------- deferred delivery */

/* c's deferred entry for conv, or NULL; conn->mu held. */
static struct conn_backfill *
deliver_bf_find(struct conn *c, const char *conv)
{
	size_t	i;

	for (i = 0; i < c->nbf; i++)
		if (strcmp(c->bf[i].conv, conv) == 0)
			return &c->bf[i];
	return NULL;
}

static void
deliver_bf_remove(struct conn *c, struct conn_backfill *b)
{
	*b = c->bf[--c->nbf];
}

/* Start deferring conv at seq; conn->mu held.  0, or -1 (no room). */
static int
deliver_bf_add(struct conn *c, const char *conv, int64_t seq)
{
	struct conn_backfill	*b;

	if (c->bf == NULL &&
	    (c->bf = calloc(RELAY_BACKFILL_MAX, sizeof(*c->bf))) == NULL)
		return -1;
	if (c->nbf == RELAY_BACKFILL_MAX)
		return -1;
	b = &c->bf[c->nbf++];
	util_strlcpy(b->conv, conv, sizeof(b->conv));
	b->after = seq - 1;
	b->upto = seq;
	return 0;
}

/* ---------------------------------------------------------------- sync marks */

/* c's mark for conv (what a sync queued ahead of the listener); mu held. */
static struct conn_mark *
deliver_mark_find(struct conn *c, const char *conv)
{
	size_t	i;

	for (i = 0; i < c->nmk; i++)
		if (strcmp(c->mk[i].conv, conv) == 0)
			return &c->mk[i];
	return NULL;
}

/* The listener (or the backfill) has gone past it; conn->mu held. */
static void
deliver_mark_remove(struct conn *c, struct conn_mark *k)
{
	*k = c->mk[--c->nmk];
	if (c->nmk == 0) {
		free(c->mk);
		c->mk = NULL;
		c->capmk = 0;
	}
}

/*
 * Raise c's mark for conv to seq; conn->mu held.  At RELAY_MARK_MAX the
 * oldest goes (at worst that row reaches the connection twice).
 */
static void
deliver_mark_raise(struct conn *c, const char *conv, int64_t seq)
{
	struct conn_mark	*k, *v;
	size_t			 i, ncap;

	if ((k = deliver_mark_find(c, conv)) != NULL) {
		if (seq > k->seq)
			k->seq = seq;
		return;
	}
	if (c->nmk == c->capmk && c->capmk < RELAY_MARK_MAX) {
		ncap = c->capmk ? c->capmk * 2 : DELIVER_MARK_GROW;
		if (ncap > RELAY_MARK_MAX)
			ncap = RELAY_MARK_MAX;
		if ((v = realloc(c->mk, ncap * sizeof(*v))) != NULL) {
			c->mk = v;
			c->capmk = ncap;
		}
	}
	if (c->nmk < c->capmk) {
		k = &c->mk[c->nmk++];
	} else if (c->nmk > 0) {
		k = &c->mk[0];
		for (i = 1; i < c->nmk; i++)
			if (c->mk[i].at_ms < k->at_ms)
				k = &c->mk[i];
	} else {
		return;		/* out of memory: at worst a duplicate */
	}
	util_strlcpy(k->conv, conv, sizeof(k->conv));
	k->seq = seq;
	k->at_ms = util_mono_ms();
}

/* A sync reply queued row m to c; see relay.h. */
void
deliver_mark_locked(struct conn *c, const struct deliver_row *m)
{
	struct conn_backfill	*b;
	struct deliver_conv	*e;
	int64_t			 last = -1;

	if (strlen(m->conv) >= RELAY_CONV_MAX)
		return;
	if ((b = deliver_bf_find(c, m->conv)) == NULL || m->seq <= b->after) {
		/*
		 * Not owed by a backfill: only what the listener may still
		 * deliver matters, i.e. above its last seq, and created
		 * recently enough for a live notification or a catch-up
		 * (which reads DELIVER_MARGIN_MS before the loss).
		 */
		if (m->created_ms <= listen_db_ms() - DELIVER_MARGIN_MS)
			return;
		pthread_mutex_lock(&deliver_mu);
		if ((e = deliver_conv_get(m->conv, 0)) != NULL)
			last = e->last_seq;
		pthread_mutex_unlock(&deliver_mu);
		if (m->seq <= last)
			return;
	}
	deliver_mark_raise(c, m->conv, m->seq);
}

/* Registry read lock held: queue only. */
static void
deliver_to_conn(struct conn *c, void *arg)
{
	struct deliver_ctx	*d = arg;
	struct conn_backfill	*b;
	struct conn_mark	*k;
	struct conn		**v;
	int			 sent = 0;

	pthread_mutex_lock(&c->mu);
	if (c->state != CONN_OPEN)
		goto out;
	if ((b = deliver_bf_find(c, d->conv)) != NULL) {
		/* Deferred: the backfill job brings it, in order.  A client
		 * that reads slower than the conversation moves is a slow
		 * consumer all the same (PROTOCOL §2): it resyncs. */
		if (d->seq > b->upto)
			b->upto = d->seq;
		if (b->upto - b->after > RELAY_BACKFILL_LAG)
			conn_close_locked(c, 4030, "slow consumer");
		goto out;
	}
	if (c->nmk > 0 && (k = deliver_mark_find(c, d->conv)) != NULL) {
		/* A sync queued up to k->seq: skip that far, then forget. */
		sent = d->seq <= k->seq;
		if (d->seq >= k->seq)
			deliver_mark_remove(c, k);
	}
	if (c->uid == d->sender && d->client_id != NULL &&
	    deliver_take_locked(c, d->client_id))
		goto out;		/* the sending connection: it has the ack */
	if (sent)
		goto out;
	if (d->f->bulk && d->conv != NULL && outq_bulk_full_locked(c)) {
		if (deliver_bf_add(c, d->conv, d->seq) == -1) {
			conn_close_locked(c, 4030, "slow consumer");
			goto out;
		}
		metrics_inc(M_DEFERRED);
		if (!c->bf_job) {
			if (d->nspawn == d->capspawn) {
				size_t ncap = d->capspawn ? d->capspawn * 2 : 16;

				if ((v = realloc(d->spawn, ncap * sizeof(*v))) == NULL) {
					deliver_bf_remove(c, &c->bf[c->nbf - 1]);
					conn_close_locked(c, 1011, "out of memory");
					goto out;
				}
				d->spawn = v;
				d->capspawn = ncap;
			}
			conn_ref(c);
			d->spawn[d->nspawn++] = c;
			c->bf_job = 1;
		}
		goto out;
	}
	if (outq_send_locked(c, d->f) == 0)
		d->queued++;
out:
	pthread_mutex_unlock(&c->mu);
}

struct deliver_bf_job {
	struct job	 job;
	struct conn	*c;
};

/* End deferred delivery on c: nothing more comes that way; conn->mu held. */
static void
deliver_bf_stop_locked(struct conn *c)
{
	c->nbf = 0;
	c->bf_job = 0;
}

static void
deliver_bf_drop(struct job *job)
{
	struct deliver_bf_job	*j = (struct deliver_bf_job *)job;
	struct conn		*c = j->c;

	/* Messages were handed to this connection: it must resync. */
	pthread_mutex_lock(&c->mu);
	if (c->nbf > 0)
		conn_close_locked(c, 1011, "overloaded; reconnect and sync");
	deliver_bf_stop_locked(c);
	pthread_mutex_unlock(&c->mu);
	conn_unref(c);
	free(j);
}

/*
 * Deliver one page of c's first deferred conversation.  Returns 1 to go on,
 * 2 when parked (the job is no longer ours), 0 when done, -1 on a database
 * failure.
 */
static int
deliver_bf_page(struct deliver_bf_job *j, struct db *db)
{
	struct conn		*c = j->c;
	struct conn_backfill	 cur, *b;
	struct conn_mark	*k;
	struct deliver_row	 m;
	struct frame		*f;
	const char		*v[3];
	char			 a[24], n[24], *txt;
	PGresult		*res = NULL;
	json_t			*ev;
	int64_t			 want;
	int			 rc, i, rows, stopped = 0, queued = 0;

	pthread_mutex_lock(&c->mu);
	while (c->nbf > 0 && c->bf[0].after >= c->bf[0].upto)
		deliver_bf_remove(c, &c->bf[0]);	/* back to live */
	if (c->state != CONN_OPEN || c->nbf == 0) {
		deliver_bf_stop_locked(c);
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	if ((rc = outq_park_locked(c, &j->job)) != 0) {
		if (rc == -1)
			deliver_bf_stop_locked(c);
		pthread_mutex_unlock(&c->mu);
		return rc == 1 ? 2 : 0;
	}
	cur = c->bf[0];
	pthread_mutex_unlock(&c->mu);

	want = cur.upto - cur.after;
	if (want > DELIVER_PAGE)
		want = DELIVER_PAGE;
	snprintf(a, sizeof(a), "%lld", (long long)cur.after);
	snprintf(n, sizeof(n), "%lld", (long long)want);
	v[0] = cur.conv;
	v[1] = a;
	v[2] = n;
	if ((rc = dbpool_exec(db, STMT_AFTER, 3, v, &res)) != DB_OK) {
		clog_warnx_rl(c, "backfill of %s: %s", cur.conv, db->err);
		PQclear(res);
		return -1;
	}
	rows = PQntuples(res);
	for (i = 0; i < rows && !stopped; i++) {
		deliver_parse(res, i, &m);
		if (m.seq <= cur.after)
			continue;
		if (m.seq > cur.upto)
			break;
		f = NULL;
		if ((ev = deliver_event(&m)) != NULL &&
		    (txt = jsonutil_dump(ev)) != NULL) {
			f = outq_frame(0x1, txt, strlen(txt));
			free(txt);
		}
		json_decref(ev);
		if (f == NULL) {
			PQclear(res);
			return -1;
		}
		f->bulk = 1;
		pthread_mutex_lock(&c->mu);
		k = c->nmk > 0 ? deliver_mark_find(c, cur.conv) : NULL;
		if ((b = deliver_bf_find(c, cur.conv)) == NULL ||
		    c->state != CONN_OPEN || outq_bulk_full_locked(c)) {
			stopped = 1;	/* forgotten, closing, or full: loop */
		} else if (c->uid == m.sender &&
		    deliver_take_locked(c, m.client_id)) {
			b->after = m.seq;	/* the sending connection */
		} else if (k != NULL && m.seq <= k->seq) {
			b->after = m.seq;	/* a sync queued it already */
		} else if (outq_send_locked(c, f) == 0) {
			b->after = m.seq;
			queued++;
		} else {
			stopped = 1;
		}
		if (!stopped && k != NULL && b->after >= k->seq)
			deliver_mark_remove(c, k);
		pthread_mutex_unlock(&c->mu);
		outq_frame_unref(f);
	}
	if (!stopped && rows < want) {
		/* Fewer rows than seqs handed over (deleted): skip them. */
		pthread_mutex_lock(&c->mu);
		if ((b = deliver_bf_find(c, cur.conv)) != NULL &&
		    b->after < cur.upto)
			b->after = cur.upto;
		pthread_mutex_unlock(&c->mu);
	}
	PQclear(res);
	metrics_add(M_MSG_OUT, queued);
	return 1;
}

static void
deliver_bf_run(struct job *job, struct db *db)
{
	struct deliver_bf_job	*j = (struct deliver_bf_job *)job;
	struct conn		*c = j->c;
	int			 rc;

	while ((rc = deliver_bf_page(j, db)) == 1)
		;
	if (rc == 2)
		return;		/* parked: runs again when output drained */
	if (rc == -1) {
		pthread_mutex_lock(&c->mu);
		conn_close_locked(c, 1011, "database unavailable; reconnect "
		    "and sync");
		deliver_bf_stop_locked(c);
		pthread_mutex_unlock(&c->mu);
	}
	conn_unref(c);
	free(j);
}

/* Start the backfill jobs a fan-out asked for (their refs are handed on). */
static void
deliver_bf_spawn(struct deliver_ctx *d)
{
	struct deliver_bf_job	*j;
	size_t			 i;

	for (i = 0; i < d->nspawn; i++) {
		if ((j = calloc(1, sizeof(*j))) == NULL) {
			pthread_mutex_lock(&d->spawn[i]->mu);
			conn_close_locked(d->spawn[i], 1011, "out of memory");
			deliver_bf_stop_locked(d->spawn[i]);
			pthread_mutex_unlock(&d->spawn[i]->mu);
			conn_unref(d->spawn[i]);
			continue;
		}
		j->job.run = deliver_bf_run;
		j->job.drop = deliver_bf_drop;
		j->c = d->spawn[i];
		clog_debug(j->c, "deferring catch-up delivery to its pace");
		dbpool_submit(&j->job);
	}
	free(d->spawn);
	d->spawn = NULL;
	d->nspawn = d->capspawn = 0;
}

static void
deliver_bf_forget_conn(struct conn *c, void *arg)
{
	struct conn_backfill	*b;
	struct conn_mark	*k;

	pthread_mutex_lock(&c->mu);
	if ((b = deliver_bf_find(c, arg)) != NULL)
		deliver_bf_remove(c, b);
	if ((k = deliver_mark_find(c, arg)) != NULL)
		deliver_mark_remove(c, k);
	pthread_mutex_unlock(&c->mu);
}

/* Forget a conversation's deferred delivery for a user; see relay.h. */
void
deliver_backfill_forget(int64_t uid, const char *conv)
{
	conn_foreach_user(uid, deliver_bf_forget_conn, (void *)(uintptr_t)conv);
}

static void
deliver_json_to_conn(struct conn *c, void *arg)
{
	struct deliver_ctx	*d = arg;

	pthread_mutex_lock(&c->mu);
	if (c->state == CONN_OPEN && outq_send_locked(c, d->f) == 0)
		d->queued++;
	pthread_mutex_unlock(&c->mu);
}

/* Queue a JSON object to a user's connections; see relay.h. */
void
deliver_user_json(int64_t uid, json_t *j)
{
	struct deliver_ctx	 d;
	char			*s;

	memset(&d, 0, sizeof(d));
	if (j == NULL)
		return;
	if ((s = jsonutil_dump(j)) != NULL &&
	    (d.f = outq_frame(0x1, s, strlen(s))) != NULL) {
		conn_foreach_user(uid, deliver_json_to_conn, &d);
		outq_frame_unref(d.f);
	}
	free(s);
	json_decref(j);
}

/* The event of a row; see relay.h. */
json_t *
deliver_event(const struct deliver_row *m)
{
	long long	 a, b, gid;
	char		 ts[25];

	util_rfc3339(m->created_ms, ts);
	if (sscanf(m->conv, "dm:%lld:%lld", &a, &b) == 2)
		return json_pack("{s:s, s:I, s:s, s:I, s:{s:I, s:s}, s:I, s:s, "
		    "s:s, s:s}", "type", "private_message",
		    "id", (json_int_t)m->id, "conversation", m->conv,
		    "seq", (json_int_t)m->seq,
		    "from", "id", (json_int_t)m->sender, "name", m->name,
		    "to", (json_int_t)(m->sender == a ? b : a),
		    "body", m->body, "client_id", m->client_id, "ts", ts);
	if (sscanf(m->conv, "group:%lld", &gid) == 1)
		return json_pack("{s:s, s:I, s:s, s:I, s:{s:I, s:s}, s:I, s:s, "
		    "s:s, s:s}", "type", "group_message",
		    "id", (json_int_t)m->id, "conversation", m->conv,
		    "seq", (json_int_t)m->seq,
		    "from", "id", (json_int_t)m->sender, "name", m->name,
		    "group", (json_int_t)gid,
		    "body", m->body, "client_id", m->client_id, "ts", ts);
	return NULL;
}

static void
deliver_one(PGconn *pg, const struct deliver_row *m, int bulk)
{
	struct deliver_ctx	 d;
	long long		 a, b, gid;
	int64_t			*ids = NULL, self[2];
	size_t			 n = 0, i;
	char			*s = NULL;
	json_t			*j;

	if ((j = deliver_event(m)) == NULL) {
		log_warnx("message %lld: unknown conversation kind",
		    (long long)m->id);
		return;
	}
	if (sscanf(m->conv, "dm:%lld:%lld", &a, &b) == 2) {
		self[0] = a;
		self[1] = b;
		ids = self;
		n = a == b ? 1 : 2;
	} else if (sscanf(m->conv, "group:%lld", &gid) == 1 &&
	    group_members(gid, pg, &ids, &n) == -1) {
		log_warnx("message %lld: no member list; not delivered here",
		    (long long)m->id);
		json_decref(j);
		return;
	}
	memset(&d, 0, sizeof(d));
	if ((s = jsonutil_dump(j)) == NULL ||
	    (d.f = outq_frame(0x1, s, strlen(s))) == NULL) {
		log_error("message %lld: out of memory", (long long)m->id);
		goto done;
	}
	d.f->bulk = (uint8_t)bulk;
	d.sender = m->sender;
	d.client_id = m->client_id;
	d.conv = m->conv;
	d.seq = m->seq;
	for (i = 0; i < n; i++)
		conn_foreach_user(ids[i], deliver_to_conn, &d);
	deliver_bf_spawn(&d);
	metrics_add(M_MSG_OUT, d.queued);
	metrics_notify_lag_ms(util_now_ms() - m->created_ms);
done:
	outq_frame_unref(d.f);
	free(s);
	json_decref(j);
	if (ids != self)
		free(ids);
}

/* Parse a DELIVER_COLS row; see relay.h. */
void
deliver_parse(PGresult *res, int i, struct deliver_row *m)
{
	m->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
	m->conv = PQgetvalue(res, i, 1);
	m->seq = strtoll(PQgetvalue(res, i, 2), NULL, 10);
	m->sender = strtoll(PQgetvalue(res, i, 3), NULL, 10);
	m->name = PQgetvalue(res, i, 4);
	m->body = PQgetvalue(res, i, 5);
	m->client_id = PQgetisnull(res, i, 6) ? "" : PQgetvalue(res, i, 6);
	m->created_ms = strtoll(PQgetvalue(res, i, 7), NULL, 10);
}

/* Deliver the rows of st->conv after st->last_seq, before `before`. */
static int
deliver_fill_gap(PGconn *pg, struct deliver_conv *st, int64_t before)
{
	const char		*v[3];
	char			 a[24], n[24];
	struct deliver_row	 m;
	PGresult		*res;
	int			 i;

	while (st->last_seq + 1 < before) {
		snprintf(a, sizeof(a), "%lld", (long long)st->last_seq);
		snprintf(n, sizeof(n), "%lld", (long long)(before - st->last_seq - 1 >
		    DELIVER_PAGE ? DELIVER_PAGE : before - st->last_seq - 1));
		v[0] = st->conv;
		v[1] = a;
		v[2] = n;
		res = PQexecParams(pg, "SELECT " DELIVER_COLS " FROM "
		    "parley.messages_after($1, $2::bigint, $3::integer) g", 3, NULL,
		    v, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			log_warnx("listener: gap fill of %s: %s", st->conv,
			    PQresultErrorMessage(res));
			PQclear(res);
			return -1;
		}
		if (PQntuples(res) == 0) {
			PQclear(res);
			return 0;
		}
		for (i = 0; i < PQntuples(res); i++) {
			deliver_parse(res, i, &m);
			if (m.seq <= st->last_seq || m.seq >= before)
				continue;
			deliver_one(pg, &m, 1);
			deliver_conv_set(st, m.seq);
		}
		PQclear(res);
	}
	return 0;
}

/* Deliver rows in order; see relay.h. */
void
deliver_rows(PGconn *pg, PGresult *res)
{
	struct deliver_row	 m;
	struct deliver_conv	*st;
	int			 i;

	for (i = 0; i < PQntuples(res); i++) {
		deliver_parse(res, i, &m);
		if ((st = deliver_conv_get(m.conv, 1)) != NULL) {
			st->used_ms = util_mono_ms();
			if (st->last_seq >= m.seq)
				continue;	/* delivered already */
			if (st->last_seq >= 0 && m.seq > st->last_seq + 1) {
				log_info("listener: %s: seq %lld after %lld; "
				    "filling the gap", m.conv, (long long)m.seq,
				    (long long)st->last_seq);
				(void)deliver_fill_gap(pg, st, m.seq);
			}
		}
		deliver_one(pg, &m, deliver_catching_up);
		if (st != NULL && m.seq > st->last_seq)
			deliver_conv_set(st, m.seq);
	}
}

/* After a reconnect; see relay.h. */
int
deliver_catch_up(PGconn *pg, int64_t lost_db_ms, int64_t first_db_ms)
{
	const char	*v[3];
	char		 since[24], conv[RELAY_CONV_MAX] = "", seq[24] = "0";
	PGresult	*res;
	int64_t		 from;
	int		 n, total = 0;

	/* Rows created before the listener first listened were never live
	 * here: a connection has them from a sync, or not at all. */
	from = lost_db_ms - DELIVER_MARGIN_MS;
	if (from < first_db_ms)
		from = first_db_ms;
	snprintf(since, sizeof(since), "%lld", (long long)from);
	for (;;) {
		v[0] = since;
		v[1] = conv;
		v[2] = seq;
		res = PQexecParams(pg, "SELECT " DELIVER_COLS " FROM "
		    "parley.messages_since(to_timestamp($1::bigint / 1000.0), "
		    "$2::text, $3::bigint, 500) g", 3, NULL, v, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			log_warnx("listener: catch-up: %s",
			    PQresultErrorMessage(res));
			PQclear(res);
			return -1;
		}
		n = PQntuples(res);
		if (n > 0) {
			deliver_catching_up = 1;
			deliver_rows(pg, res);
			deliver_catching_up = 0;
			util_strlcpy(conv, PQgetvalue(res, n - 1, 1),
			    sizeof(conv));
			util_strlcpy(seq, PQgetvalue(res, n - 1, 2), sizeof(seq));
		}
		PQclear(res);
		total += n;
		if (n < DELIVER_PAGE)
			break;
	}
	log_info("listener: caught up (%d messages since the connection was "
	    "lost)", total);
	return 0;
}
