/*
 * convo.c: the conversation commands of PROTOCOL §2 besides sending:
 * history, sync (then sync_done), conversation_list, read and typing.
 *
 * Each runs on a database worker through the schema's functions
 * (parley.history, sync_messages, conversation_list, mark_read,
 * conversation_check), which check access themselves (PA403/PA404).
 * Replies to history, sync and conversation_list are bulk output (outq.c):
 * they never count toward the 4030 bound, and are paced instead.  A sync
 * streams its messages while the connection's unsent bulk output is below
 * half of PARLEY_SEND_QUEUE, parks when it reaches that and goes on when
 * the client has read it down to a quarter, up to CONVO_SYNC_MAX messages
 * per command ("more": true beyond).  A history reply is one frame, cut to
 * the newest messages that fit in half of PARLEY_SEND_QUEUE ("more": true
 * when cut), and waits until bulk output is below the mark.
 *
 * `read` and `typing` reach the user's (or the participants') connections
 * on every relay through two relay-to-relay channels, parley_read and
 * parley_typing, notified in the same statement as the check; the
 * listener thread delivers them (convo_notify_*).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

#define CONVO_HISTORY_DEFAULT	50
#define CONVO_HISTORY_MAX	100
#define CONVO_SYNC_PAGE		500
#define CONVO_SYNC_MAX		5000	/* messages per sync command */
#define CONVO_SINCE_MAX		10000	/* conversations in "since" */

/* "dm:<a>:<b>" or "group:<g>", positive decimal ids; see relay.h. */
int
convo_id_ok(const char *s)
{
	const char	*p;
	int		 parts, i;

	if (s == NULL || strlen(s) >= RELAY_CONV_MAX)
		return 0;
	if (strncmp(s, "dm:", 3) == 0) {
		p = s + 3;
		parts = 2;
	} else if (strncmp(s, "group:", 6) == 0) {
		p = s + 6;
		parts = 1;
	} else {
		return 0;
	}
	for (i = 0; i < parts; i++) {
		if (*p < '1' || *p > '9')
			return 0;
		while (*p >= '0' && *p <= '9')
			p++;
		if (i + 1 < parts && *p++ != ':')
			return 0;
	}
	return *p == '\0';
}

/* The "conversation" member, checked; NULL after an error reply. */
static const char *
convo_arg(struct conn *c, json_t *msg, const char *ref)
{
	const char	*conv = jsonutil_get_str(msg, "conversation");

	if (!convo_id_ok(conv)) {
		cmd_error(c, ref, "bad_request", "\"conversation\" must be "
		    "\"dm:<low id>:<high id>\" or \"group:<id>\"");
		return NULL;
	}
	return conv;
}

/* ---------------------------------------------------------------- history */

struct convo_hist {
	struct cmd_job	 cj;
	char		 conv[RELAY_CONV_MAX];
	int64_t		 before;	/* 0: none */
	int64_t		 limit;
};

static void
convo_history_run(struct job *job, struct db *db)
{
	struct convo_hist	*h = (struct convo_hist *)job;
	struct deliver_row	 m;
	const char		*v[4];
	char			 a[24], b[24], l[24];
	PGresult		*res = NULL;
	json_t			*arr, *j, *ev;
	size_t			 budget, used = 0;
	int			 rc, n, first, i, more;

	if ((rc = cmd_job_park(&h->cj)) == 1)
		return;			/* runs again when output drained */
	if (rc == -1)
		goto done;		/* closing */
	snprintf(a, sizeof(a), "%lld", (long long)h->cj.uid);
	snprintf(b, sizeof(b), "%lld", (long long)h->before);
	snprintf(l, sizeof(l), "%lld", (long long)h->limit + 1);
	v[0] = a;
	v[1] = h->conv;
	v[2] = h->before > 0 ? b : NULL;
	v[3] = l;
	if ((rc = dbpool_exec(db, STMT_HISTORY, 4, v, &res)) != DB_OK) {
		cmd_job_dberr(&h->cj, db, rc);
		goto done;
	}
	n = PQntuples(res);
	more = n > h->limit;
	first = more ? 1 : 0;
	/* Keep the newest that fit in half the send queue. */
	budget = (size_t)h->cj.c->send_limit / 2;
	for (i = n - 1; i >= first; i--) {
		used += (size_t)PQgetlength(res, i, 5) + 256;
		if (used > budget) {
			first = i + 1;
			more = 1;
			break;
		}
	}
	if ((arr = json_array()) == NULL)
		goto done;
	for (i = first; i < n; i++) {
		deliver_parse(res, i, &m);
		if ((ev = deliver_event(&m)) != NULL)
			json_array_append_new(arr, ev);
	}
	j = json_pack("{s:s, s:s, s:o, s:b}", "type", "history",
	    "conversation", h->conv, "messages", arr, "more", more);
	cmd_job_reply_bulk(&h->cj, j);
done:
	PQclear(res);
	cmd_job_free(h);
}

/* `history` {conversation, before_seq?, limit?}; see relay.h. */
void
convo_history(struct conn *c, json_t *msg, const char *ref)
{
	struct convo_hist	*h;
	const char		*conv;
	int64_t			 before = 0, limit = CONVO_HISTORY_DEFAULT;
	json_t			*v;

	if ((conv = convo_arg(c, msg, ref)) == NULL)
		return;
	if ((v = json_object_get(msg, "before_seq")) != NULL && !json_is_null(v) &&
	    (jsonutil_get_int(msg, "before_seq", &before) == -1 || before < 1)) {
		cmd_error(c, ref, "bad_request",
		    "\"before_seq\" must be a positive integer");
		return;
	}
	if ((v = json_object_get(msg, "limit")) != NULL && !json_is_null(v) &&
	    (jsonutil_get_int(msg, "limit", &limit) == -1 || limit < 1 ||
	    limit > CONVO_HISTORY_MAX)) {
		cmd_error(c, ref, "bad_request",
		    "\"limit\" must be an integer from 1 to 100");
		return;
	}
	if ((h = cmd_job_new(c, ref, sizeof(*h), convo_history_run)) == NULL)
		return;
	util_strlcpy(h->conv, conv, sizeof(h->conv));
	h->before = before;
	h->limit = limit;
	cmd_job_submit(&h->cj);
}

/* ---------------------------------------------------------------- sync */

struct convo_sync {
	struct cmd_job	 cj;
	json_t		*since;		/* {"conversation": seq}, advanced as sent */
	int		 sent;		/* messages sent by this command */
};

/*
 * Queue one message of the sync unless bulk output is at the high mark:
 * 0 queued, 1 parked (the job runs again later), -1 the connection is
 * closing.
 */
static int
convo_sync_push(struct convo_sync *s, const struct deliver_row *m)
{
	struct conn	*c = s->cj.c;
	struct frame	*f = NULL;
	char		*txt;
	json_t		*ev;
	int		 rc;

	if ((ev = deliver_event(m)) != NULL && (txt = jsonutil_dump(ev)) != NULL) {
		f = outq_frame(0x1, txt, strlen(txt));
		free(txt);
	}
	json_decref(ev);
	if (f == NULL)
		return -1;
	f->bulk = 1;
	pthread_mutex_lock(&c->mu);
	if ((rc = outq_park_locked(c, &s->cj.job)) == 0 &&
	    (rc = outq_send_locked(c, f)) == 0)
		deliver_mark_locked(c, m);	/* not delivered to c again */
	pthread_mutex_unlock(&c->mu);
	outq_frame_unref(f);
	return rc;
}

static void
convo_sync_run(struct job *job, struct db *db)
{
	struct convo_sync	*s = (struct convo_sync *)job;
	struct deliver_row	 m;
	const char		*v[3];
	char			 a[24], page[16], *since = NULL;
	PGresult		*res = NULL;
	int			 rc, n, i, more = 0;

	snprintf(a, sizeof(a), "%lld", (long long)s->cj.uid);
	snprintf(page, sizeof(page), "%d", CONVO_SYNC_PAGE);
	for (;;) {
		free(since);
		if ((since = jsonutil_dump(s->since)) == NULL) {
			cmd_error(s->cj.c, cmd_job_ref(&s->cj), "internal",
			    "out of memory");
			goto done;
		}
		v[0] = a;
		v[1] = since;
		v[2] = page;
		if ((rc = dbpool_exec(db, STMT_SYNC, 3, v, &res)) != DB_OK) {
			cmd_job_dberr(&s->cj, db, rc);
			goto done;
		}
		n = PQntuples(res);
		for (i = 0; i < n; i++) {
			if (s->sent >= CONVO_SYNC_MAX) {
				more = 1;
				break;
			}
			deliver_parse(res, i, &m);
			switch (convo_sync_push(s, &m)) {
			case 0:
				break;
			case 1:
				/* Parked: the rest is read again from `since`. */
				free(since);
				PQclear(res);
				return;
			default:
				goto done;	/* closing: no sync_done */
			}
			json_object_set_new(s->since, m.conv,
			    json_integer((json_int_t)m.seq));
			s->sent++;
		}
		PQclear(res);
		res = NULL;
		if (more || n < CONVO_SYNC_PAGE)
			break;
	}
	cmd_job_reply_bulk(&s->cj, json_pack("{s:s, s:b}", "type", "sync_done",
	    "more", more));
done:
	free(since);
	PQclear(res);
	json_decref(s->since);
	cmd_job_free(s);
}

static void
convo_sync_drop(struct job *job)
{
	struct convo_sync	*s = (struct convo_sync *)job;

	cmd_error(s->cj.c, cmd_job_ref(&s->cj), s->cj.drop_code,
	    s->cj.drop_msg);
	json_decref(s->since);
	cmd_job_free(s);
}

/* `sync` {since: {conversation: seq}}; see relay.h. */
void
convo_sync(struct conn *c, json_t *msg, const char *ref)
{
	struct convo_sync	*s;
	json_t			*since, *val;
	const char		*k;

	since = json_object_get(msg, "since");
	if (since != NULL && !json_is_null(since) && !json_is_object(since)) {
		cmd_error(c, ref, "bad_request", "\"since\" must be an object "
		    "of conversation: seq");
		return;
	}
	if (since != NULL && json_is_object(since)) {
		if (json_object_size(since) > CONVO_SINCE_MAX) {
			cmd_error(c, ref, "bad_request", "\"since\" lists too "
			    "many conversations");
			return;
		}
		json_object_foreach(since, k, val) {
			if (!convo_id_ok(k) || !json_is_integer(val) ||
			    json_integer_value(val) < 0) {
				cmd_error(c, ref, "bad_request", "\"since\" must "
				    "map conversations to seq numbers >= 0");
				return;
			}
		}
	}
	if ((s = cmd_job_new(c, ref, sizeof(*s), convo_sync_run)) == NULL)
		return;
	s->cj.job.drop = convo_sync_drop;
	s->since = since != NULL && json_is_object(since) ?
	    json_deep_copy(since) : json_object();
	if (s->since == NULL) {
		cmd_error(c, ref, "internal", "out of memory");
		cmd_job_free(s);
		return;
	}
	cmd_job_submit(&s->cj);
}

/* ---------------------------------------------------------------- conversation_list */

static void
convo_list_run(struct job *job, struct db *db)
{
	struct cmd_job	*cj = (struct cmd_job *)job;
	const char	*v[1];
	char		 a[24];
	PGresult	*res = NULL;
	json_t		*arr;
	int		 rc, i;

	if ((rc = cmd_job_park(cj)) == 1)
		return;
	if (rc == -1)
		goto done;
	snprintf(a, sizeof(a), "%lld", (long long)cj->uid);
	v[0] = a;
	if ((rc = dbpool_exec(db, STMT_CONVS, 1, v, &res)) != DB_OK) {
		cmd_job_dberr(cj, db, rc);
		goto done;
	}
	if ((arr = json_array()) == NULL)
		goto done;
	for (i = 0; i < PQntuples(res); i++)
		json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:o}",
		    "conversation", PQgetvalue(res, i, 0),
		    "last_seq", (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10),
		    "read_seq", (json_int_t)strtoll(PQgetvalue(res, i, 2), NULL, 10),
		    "title", PQgetisnull(res, i, 3) ? json_null() :
		    json_string(PQgetvalue(res, i, 3))));
	cmd_job_reply_bulk(cj, json_pack("{s:s, s:o}", "type",
	    "conversation_list", "conversations", arr));
done:
	PQclear(res);
	cmd_job_free(cj);
}

/* `conversation_list`; see relay.h. */
void
convo_list(struct conn *c, json_t *msg, const char *ref)
{
	struct cmd_job	*cj;

	(void)msg;
	if ((cj = cmd_job_new(c, ref, sizeof(*cj), convo_list_run)) != NULL)
		cmd_job_submit(cj);
}

/* ---------------------------------------------------------------- read, typing */

struct convo_mark {
	struct cmd_job	 cj;
	char		 conv[RELAY_CONV_MAX];
	int64_t		 seq;
	uint64_t	 conn_id;
};

static void
convo_read_run(struct job *job, struct db *db)
{
	struct convo_mark	*r = (struct convo_mark *)job;
	const char		*v[5];
	char			 a[24], b[24], d[24];
	PGresult		*res = NULL;
	int			 rc;

	snprintf(a, sizeof(a), "%lld", (long long)r->cj.uid);
	snprintf(b, sizeof(b), "%lld", (long long)r->seq);
	snprintf(d, sizeof(d), "%llu", (unsigned long long)r->conn_id);
	v[0] = a;
	v[1] = r->conv;
	v[2] = b;
	v[3] = rcfg_boot.relay_id;
	v[4] = d;
	/* PROTOCOL §2: no reply unless it fails. */
	if ((rc = dbpool_exec(db, STMT_READ, 5, v, &res)) != DB_OK)
		cmd_job_dberr(&r->cj, db, rc);
	PQclear(res);
	cmd_job_free(r);
}

/* `read` {conversation, seq}; see relay.h. */
void
convo_read(struct conn *c, json_t *msg, const char *ref)
{
	struct convo_mark	*r;
	const char		*conv;
	int64_t			 seq;

	if ((conv = convo_arg(c, msg, ref)) == NULL)
		return;
	if (jsonutil_get_int(msg, "seq", &seq) == -1 || seq < 0) {
		cmd_error(c, ref, "bad_request", "\"seq\" must be an integer "
		    ">= 0");
		return;
	}
	if ((r = cmd_job_new(c, ref, sizeof(*r), convo_read_run)) == NULL)
		return;
	util_strlcpy(r->conv, conv, sizeof(r->conv));
	r->seq = seq;
	r->conn_id = c->id;
	cmd_job_submit(&r->cj);
}

static void
convo_typing_run(struct job *job, struct db *db)
{
	struct convo_mark	*t = (struct convo_mark *)job;
	const char		*v[2];
	char			 a[24];
	PGresult		*res = NULL;
	int			 rc;

	snprintf(a, sizeof(a), "%lld", (long long)t->cj.uid);
	v[0] = a;
	v[1] = t->conv;
	if ((rc = dbpool_exec(db, STMT_TYPING, 2, v, &res)) != DB_OK)
		cmd_job_dberr(&t->cj, db, rc);
	PQclear(res);
	cmd_job_free(t);
}

/* `typing` {conversation}: not stored; see relay.h. */
void
convo_typing(struct conn *c, json_t *msg, const char *ref)
{
	struct convo_mark	*t;
	const char		*conv;

	if ((conv = convo_arg(c, msg, ref)) == NULL)
		return;
	if ((t = cmd_job_new(c, ref, sizeof(*t), convo_typing_run)) == NULL)
		return;
	util_strlcpy(t->conv, conv, sizeof(t->conv));
	cmd_job_submit(&t->cj);
}

/* ---------------------------------------------------------------- listener side */

struct convo_except {
	uint64_t	 conn_id;	/* 0: none */
	struct frame	*f;
};

static void
convo_to_conn(struct conn *c, void *arg)
{
	struct convo_except	*e = arg;

	if (c->id != e->conn_id)
		outq_send(c, e->f);
}

static struct frame *
convo_frame(json_t *j)
{
	struct frame	*f = NULL;
	char		*s;

	if (j != NULL && (s = jsonutil_dump(j)) != NULL) {
		f = outq_frame(0x1, s, strlen(s));
		free(s);
	}
	json_decref(j);
	return f;
}

/* parley_read {user, conversation, seq, relay, conn}; see relay.h. */
void
convo_notify_read(json_t *n)
{
	struct convo_except	 e;
	const char		*conv = jsonutil_get_str(n, "conversation");
	const char		*relay = jsonutil_get_str(n, "relay");
	int64_t			 uid, seq, cid = 0;

	if (conv == NULL || jsonutil_get_int(n, "user", &uid) == -1 ||
	    jsonutil_get_int(n, "seq", &seq) == -1)
		return;
	(void)jsonutil_get_int(n, "conn", &cid);
	memset(&e, 0, sizeof(e));
	/* The connection that sent it gets nothing back. */
	if (relay != NULL && strcmp(relay, rcfg_boot.relay_id) == 0)
		e.conn_id = (uint64_t)cid;
	if ((e.f = convo_frame(json_pack("{s:s, s:s, s:I}", "type", "read",
	    "conversation", conv, "seq", (json_int_t)seq))) == NULL)
		return;
	conn_foreach_user(uid, convo_to_conn, &e);
	outq_frame_unref(e.f);
}

/* parley_typing {user, conversation}; see relay.h. */
void
convo_notify_typing(PGconn *pg, json_t *n)
{
	struct convo_except	 e;
	const char		*conv = jsonutil_get_str(n, "conversation");
	long long		 a, b, gid;
	int64_t			 uid, *ids = NULL, pair[2];
	size_t			 cnt = 0, i;

	if (conv == NULL || jsonutil_get_int(n, "user", &uid) == -1)
		return;
	if (sscanf(conv, "dm:%lld:%lld", &a, &b) == 2) {
		pair[0] = a;
		pair[1] = b;
		ids = pair;
		cnt = 2;
	} else if (sscanf(conv, "group:%lld", &gid) != 1 ||
	    group_members(gid, pg, &ids, &cnt) == -1) {
		return;
	}
	memset(&e, 0, sizeof(e));
	e.f = convo_frame(json_pack("{s:s, s:s, s:I}", "type", "typing",
	    "conversation", conv, "user", (json_int_t)uid));
	for (i = 0; e.f != NULL && i < cnt; i++)
		if (ids[i] != uid)
			conn_foreach_user(ids[i], convo_to_conn, &e);
	outq_frame_unref(e.f);
	if (ids != pair)
		free(ids);
}
