/*
 * post.c: private_message and group_message (PROTOCOL §2): decoding, then
 * storing with group commit, then the ack.
 *
 * A message becomes a job in its connection's lane (cmd.c), so one
 * connection's messages are stored in the order sent.  The pool (dbpool.c)
 * hands every message job waiting at a moment to one worker, which stores
 * them all with parley.post_messages: one transaction, one WAL flush and one
 * pass through NOTIFY's commit lock for the lot.  A lone message on an idle
 * relay goes at once, in a batch of one; under load, messages wait at most
 * for the commit before theirs.  The ack goes out only after COMMIT.
 *
 * An element the schema refuses (PA400/403/404/413) gets its own error and
 * the others are stored.  When the batch statement fails as a whole (a
 * client_id committed at the same moment through another relay, a
 * deadlock with another relay's batch), each message is stored again on
 * its own with parley.post_message, which sorts those cases out.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

struct post {
	struct cmd_job	 cj;
	char		 conv[RELAY_CONV_MAX];
	char		 client_id[RELAY_CLIENT_ID_MAX + 1];
	char		*body;
};

static void
post_free(struct post *p)
{
	free(p->body);
	cmd_job_free(p);
}

/* Not stored: answer, and let the notification (if any) through. */
static void
post_refuse(struct post *p, const char *code, const char *msg)
{
	deliver_unexpect(p->cj.c, p->client_id);
	cmd_error(p->cj.c, cmd_job_ref(&p->cj), code, msg);
}

static void
post_drop(struct job *job)
{
	struct post	*p = (struct post *)job;

	post_refuse(p, p->cj.drop_code, p->cj.drop_msg);
	post_free(p);
}

/*
 * The database went away during the statement: the commit may have
 * happened.  Keep the expectation, so that if it did, the notification is
 * not echoed to this connection as somebody else's message; the client
 * retries with the same client_id and gets the ack (PROTOCOL §2).
 */
static void
post_unavailable(struct post *p, struct db *db)
{
	cmd_job_dberr(&p->cj, db, DB_UNAVAILABLE);
}

/* Stored (or a duplicate of what was): the ack. */
static void
post_ack(struct post *p, const char *id, const char *seq, const char *ms,
    int dup)
{
	char	 ts[25];
	json_t	*j;

	if (dup)
		deliver_unexpect(p->cj.c, p->client_id);	/* no event */
	else
		metrics_inc(M_MSG_STORED);
	util_rfc3339(strtoll(ms, NULL, 10), ts);
	j = json_pack("{s:s, s:s, s:I, s:s, s:I, s:s}", "type", "ack",
	    "client_id", p->client_id,
	    "id", (json_int_t)strtoll(id, NULL, 10),
	    "conversation", p->conv,
	    "seq", (json_int_t)strtoll(seq, NULL, 10),
	    "ts", ts);
	if (cmd_job_reply(&p->cj, j) == 0)
		metrics_inc(M_ACKS);
}

/* One message with parley.post_message, answered; p stays the caller's. */
static void
post_store_one(struct post *p, struct db *db)
{
	const char	*v[4];
	char		 a[24];
	PGresult	*res = NULL;
	int		 rc;

	snprintf(a, sizeof(a), "%lld", (long long)p->cj.uid);
	v[0] = a;
	v[1] = p->conv;
	v[2] = p->body;
	v[3] = p->client_id;
	rc = dbpool_exec(db, STMT_POST, 4, v, &res);
	if (rc == DB_UNAVAILABLE) {
		post_unavailable(p, db);
	} else if (rc != DB_OK) {
		deliver_unexpect(p->cj.c, p->client_id);
		cmd_job_dberr(&p->cj, db, rc);
	} else if (PQntuples(res) != 1 || PQnfields(res) != 4) {
		clog_warnx(p->cj.c, "post_message returned %d rows",
		    PQntuples(res));
		post_refuse(p, "internal", "internal error");
	} else {
		post_ack(p, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
		    PQgetvalue(res, 0, 2), strcmp(PQgetvalue(res, 0, 3), "t") == 0);
	}
	PQclear(res);
}

/* The pool ran this message alone. */
static void
post_run(struct job *job, struct db *db)
{
	struct post	*p = (struct post *)job;

	post_store_one(p, db);
	post_free(p);
}

/* [{"s":sender,"c":conversation,"b":body,"k":client_id}, ...] */
static char *
post_batch_json(struct job **v, size_t n)
{
	json_t	*a, *e;
	char	*s;
	size_t	 i;

	if ((a = json_array()) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		const struct post *p = (const struct post *)v[i];

		e = json_pack("{s:I, s:s, s:s, s:s}", "s", (json_int_t)p->cj.uid,
		    "c", p->conv, "b", p->body, "k", p->client_id);
		if (e == NULL || json_array_append_new(a, e) == -1) {
			json_decref(a);
			return NULL;
		}
	}
	s = jsonutil_dump(a);
	json_decref(a);
	return s;
}

/*
 * Answer every message from post_messages' rows; 0, or -1 when the result
 * does not have one well-formed row per message (then nobody was answered
 * and the caller stores them one by one: post_message is idempotent).
 */
static int
post_answer_batch(struct job **v, size_t n, PGresult *res)
{
	const char	*err, *msg, *code;
	size_t		 i;
	long		 ord;

	if ((size_t)PQntuples(res) != n || PQnfields(res) != 6)
		return -1;
	for (i = 0; i < n; i++) {
		ord = strtol(PQgetvalue(res, (int)i, 0), NULL, 10);
		if (ord != (long)i + 1)
			return -1;
	}
	for (i = 0; i < n; i++) {
		struct post *p = (struct post *)v[i];

		if (!PQgetisnull(res, (int)i, 5)) {
			err = PQgetvalue(res, (int)i, 5);
			code = cmd_sql_error(err, &msg);
			post_refuse(p, code, msg);
		} else {
			post_ack(p, PQgetvalue(res, (int)i, 1),
			    PQgetvalue(res, (int)i, 2),
			    PQgetvalue(res, (int)i, 3),
			    strcmp(PQgetvalue(res, (int)i, 4), "t") == 0);
		}
	}
	return 0;
}

/* The pool hands over every message waiting: store them in one commit. */
static void
post_run_batch(struct job **v, size_t n, struct db *db)
{
	const char	*pv[1];
	PGresult	*res = NULL;
	char		*json = NULL;
	size_t		 i;
	int		 rc;

	if (n == 1) {
		post_run(v[0], db);
		return;
	}
	metrics_inc(M_POST_BATCHES);
	metrics_add(M_POST_BATCHED, (int64_t)n);
	if ((json = post_batch_json(v, n)) == NULL)
		goto one_by_one;
	pv[0] = json;
	rc = dbpool_exec(db, STMT_POST_BATCH, 1, pv, &res);
	if (rc == DB_UNAVAILABLE) {
		for (i = 0; i < n; i++)
			post_unavailable((struct post *)v[i], db);
		goto done;
	}
	if (rc == DB_OK && post_answer_batch(v, n, res) == 0)
		goto done;
	if (rc == DB_OK)
		log_warnx("post_messages returned %d rows for %zu messages",
		    PQntuples(res), n);
	else
		log_debug("post_messages (%zu messages): %s; storing them one "
		    "by one", n, db->err);
one_by_one:
	metrics_inc(M_POST_SPLITS);
	for (i = 0; i < n; i++)
		post_store_one((struct post *)v[i], db);
done:
	PQclear(res);
	free(json);
	for (i = 0; i < n; i++)
		post_free((struct post *)v[i]);
}

/* A client_id: 1..64 bytes of printable ASCII. */
static int
post_client_id_ok(const char *s)
{
	size_t	n = strlen(s), i;

	if (n == 0 || n > RELAY_CLIENT_ID_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return 0;
	return 1;
}

static void
post_command(struct conn *c, json_t *msg, const char *ref, int is_group)
{
	struct post	*p;
	const char	*body, *cid;
	int64_t		 target, lo, hi;

	metrics_inc(M_MSG_IN);
	if (jsonutil_get_int(msg, is_group ? "group" : "to", &target) == -1 ||
	    target <= 0) {
		cmd_error(c, ref, "bad_request", is_group ?
		    "\"group\" must be a positive integer" :
		    "\"to\" must be a positive integer");
		return;
	}
	if ((body = jsonutil_get_str(msg, "body")) == NULL) {
		cmd_error(c, ref, "bad_request", "\"body\" must be a string");
		return;
	}
	if ((cid = jsonutil_get_str(msg, "client_id")) == NULL ||
	    !post_client_id_ok(cid)) {
		cmd_error(c, ref, "bad_request", "\"client_id\" must be a string "
		    "of 1 to 64 printable ASCII characters");
		return;
	}
	if ((p = cmd_job_new(c, ref, sizeof(*p), post_run)) == NULL)
		return;
	if ((p->body = strdup(body)) == NULL) {
		cmd_error(c, ref, "internal", "out of memory");
		post_free(p);
		return;
	}
	p->cj.job.drop = post_drop;
	p->cj.job.run_batch = post_run_batch;
	p->cj.drop_msg = "the relay is overloaded; not stored, retry";
	p->cj.cost = strlen(body);
	p->cj.job.cost = p->cj.cost + sizeof(*p);
	if (is_group) {
		snprintf(p->conv, sizeof(p->conv), "group:%lld",
		    (long long)target);
	} else {
		lo = target < c->uid ? target : c->uid;
		hi = target < c->uid ? c->uid : target;
		snprintf(p->conv, sizeof(p->conv), "dm:%lld:%lld",
		    (long long)lo, (long long)hi);
	}
	util_strlcpy(p->client_id, cid, sizeof(p->client_id));
	/* Before the insert, so the listener never races past it. */
	deliver_expect(c, cid);
	cmd_job_submit(&p->cj);
}

/* private_message; see relay.h. */
void
post_private_message(struct conn *c, json_t *msg, const char *ref)
{
	post_command(c, msg, ref, 0);
}

/* group_message; see relay.h. */
void
post_group_message(struct conn *c, json_t *msg, const char *ref)
{
	post_command(c, msg, ref, 1);
}
