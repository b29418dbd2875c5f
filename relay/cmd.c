/*
 * cmd.c: client commands (PROTOCOL §2): strict decoding, the rate limit,
 * dispatch, command jobs and their lanes, and the commands that need no
 * module of their own (ping, refresh).  Messages are post.c's.
 *
 * Runs on the connection's civetweb thread: parsing is bounded (frame size
 * checked by ws.c, nesting by jsonutil) and nothing here waits for the
 * database: messages become jobs for the pool (dbpool.c), whose threads
 * send the ack or the error.  Every reply carries the command's "ref".
 *
 * Each connection has a lane: its jobs enter the pool one at a time, in
 * the order the commands arrived, the next when the previous is done.  So
 * one sender's messages commit (and get their seq) in the order sent, a
 * join_group takes effect before the group_message after it, and a
 * connection with many commands waiting holds one pool slot, not all of
 * them.  A job that waits for bulk output to drain (sync) keeps its lane.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

/* Messages waiting in a lane that go to the pool together. */
#define CMD_LANE_BATCH		128

static int
cmd_send_json_as(struct conn *c, json_t *j, int bulk)
{
	struct frame	*f = NULL;
	char		*s;
	int		 rc = -1;

	if (j == NULL)
		return -1;
	if ((s = jsonutil_dump(j)) != NULL &&
	    (f = outq_frame(0x1, s, strlen(s))) != NULL) {
		f->bulk = (uint8_t)bulk;
		rc = outq_send(c, f);
	}
	outq_frame_unref(f);
	free(s);
	json_decref(j);
	return rc;
}

/* Queue a JSON object; see relay.h. */
int
cmd_send_json(struct conn *c, json_t *j)
{
	return cmd_send_json_as(c, j, 0);
}

/* Queue a JSON object as bulk output; see relay.h. */
int
cmd_send_json_bulk(struct conn *c, json_t *j)
{
	return cmd_send_json_as(c, j, 1);
}

/* {"type":"error","ref","code","message"}; see relay.h. */
void
cmd_error(struct conn *c, const char *ref, const char *code,
    const char *message)
{
	json_t	*j;

	metrics_error(code);
	j = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code,
	    "message", message);
	if (j != NULL && ref != NULL)
		json_object_set_new(j, "ref", json_string(ref));
	cmd_send_json(c, j);
}

/* PROTOCOL §3 PARLEY_RATE: a token bucket, burst twice the rate. */
static int
cmd_rate_ok(struct conn *c, const struct rcfg *r)
{
	int64_t	now = util_mono_ms();

	c->bucket += (double)(now - c->bucket_ms) * r->rate / 1000.0;
	c->bucket_ms = now;
	if (c->bucket > 2 * r->rate)
		c->bucket = 2 * r->rate;
	if (c->bucket < 1.0)
		return 0;
	c->bucket -= 1.0;
	return 1;
}

static void
cmd_ping(struct conn *c, json_t *msg, const char *ref)
{
	char	 ts[25];
	json_t	*j;

	(void)msg;
	util_rfc3339(util_now_ms(), ts);
	j = json_pack("{s:s, s:s}", "type", "pong", "server_time", ts);
	if (j != NULL && ref != NULL)
		json_object_set_new(j, "ref", json_string(ref));
	cmd_send_json(c, j);
}

static void
cmd_auth_again(struct conn *c, json_t *msg, const char *ref)
{
	(void)msg;
	cmd_error(c, ref, "bad_request", "already authenticated");
}

/* ---------------------------------------------------------------- jobs */

/* The ref of the job's command, or NULL; see relay.h. */
const char *
cmd_job_ref(const struct cmd_job *cj)
{
	return cj->has_ref ? cj->ref : NULL;
}

static void
cmd_job_drop(struct job *job)
{
	struct cmd_job	*cj = (struct cmd_job *)job;

	cmd_error(cj->c, cmd_job_ref(cj), cj->drop_code, cj->drop_msg);
	cmd_job_free(cj);
}

/* A job for a command; see relay.h. */
void *
cmd_job_new(struct conn *c, const char *ref, size_t size,
    void (*run)(struct job *, struct db *))
{
	struct cmd_job	*cj;

	if ((cj = calloc(1, size)) == NULL) {
		cmd_error(c, ref, "internal", "out of memory");
		return NULL;
	}
	cj->job.run = run;
	cj->job.drop = cmd_job_drop;
	cj->drop_code = "unavailable";
	cj->drop_msg = "the relay is overloaded; retry";
	conn_ref(c);
	cj->c = c;
	cj->uid = c->uid;
	if (ref != NULL) {
		util_strlcpy(cj->ref, ref, sizeof(cj->ref));
		cj->has_ref = 1;
	}
	return cj;
}

/* The next job of c's lane, or NULL with the lane idle. */
static struct cmd_job *
cmd_lane_pop(struct conn *c)
{
	struct cmd_job	*next;

	pthread_mutex_lock(&c->mu);
	if ((next = c->lane_head) != NULL) {
		if ((c->lane_head = (struct cmd_job *)next->job.next) == NULL)
			c->lane_tail = NULL;
		next->job.next = NULL;
		c->lane_n--;
		c->lane_bytes -= next->cost;
		next->in_lane = 1;
	} else {
		c->lane_busy = 0;
	}
	pthread_mutex_unlock(&c->mu);
	return next;
}

/*
 * Pop the jobs at the head of c's lane that can share a batch with one
 * whose run_batch is fn (messages after a message), at most max, into v.
 */
static size_t
cmd_lane_pop_batch(struct conn *c, void (*fn)(struct job **, size_t,
    struct db *), struct cmd_job **v, size_t max)
{
	struct cmd_job	*next;
	size_t		 n = 0;

	pthread_mutex_lock(&c->mu);
	while (n < max && (next = c->lane_head) != NULL &&
	    next->job.run_batch == fn) {
		if ((c->lane_head = (struct cmd_job *)next->job.next) == NULL)
			c->lane_tail = NULL;
		next->job.next = NULL;
		c->lane_n--;
		c->lane_bytes -= next->cost;
		v[n++] = next;
	}
	pthread_mutex_unlock(&c->mu);
	return n;
}

/*
 * Put the lane's current job into the pool, with the messages waiting
 * right behind it when it is a message: they go into the same batch (or
 * the next ones, which commit after it: dbpool.c runs one batch at a
 * time), so a client sending many messages gets them committed together
 * rather than one commit each.  Only the last of them moves the lane on
 * when freed.  When the pool refuses them, drop them and go on with the
 * next, in a loop (no recursion: drops can come in long runs while the
 * relay stops, on a civetweb thread's small stack).
 */
static void
cmd_lane_start(struct conn *c, struct cmd_job *cj)
{
	struct cmd_job	*v[CMD_LANE_BATCH];
	struct job	*jv[CMD_LANE_BATCH];
	size_t		 n, i;

	conn_ref(c);
	while (cj != NULL) {
		n = 0;
		v[n++] = cj;
		if (cj->job.run_batch != NULL)
			n += cmd_lane_pop_batch(c, cj->job.run_batch, v + 1,
			    CMD_LANE_BATCH - 1);
		for (i = 0; i < n; i++) {
			v[i]->in_lane = i + 1 == n;
			jv[i] = &v[i]->job;
		}
		if (dbpool_try_submit_many(jv, n) == 0)
			break;
		for (i = 0; i < n; i++) {
			v[i]->in_lane = 0;	/* its free must not start the next */
			v[i]->job.drop(&v[i]->job);
		}
		cj = cmd_lane_pop(c);
	}
	conn_unref(c);
}

/* Release a command job and its connection reference; see relay.h. */
void
cmd_job_free(void *p)
{
	struct cmd_job	*cj = p;
	struct cmd_job	*next = NULL;
	struct conn	*c;

	if (cj == NULL)
		return;
	c = cj->c;
	if (cj->in_lane)
		next = cmd_lane_pop(c);
	if (next != NULL)
		cmd_lane_start(c, next);
	conn_unref(c);
	free(cj);
}

/* Through the connection's lane; see relay.h. */
void
cmd_job_submit(struct cmd_job *cj)
{
	struct conn	*c = cj->c;
	int		 full = 0;

	pthread_mutex_lock(&c->mu);
	if (c->lane_busy) {
		if (c->lane_n >= RELAY_LANE_MAX ||
		    c->lane_bytes + cj->cost > RELAY_LANE_BYTES) {
			full = 1;
		} else {
			cj->job.next = NULL;
			if (c->lane_tail != NULL)
				c->lane_tail->job.next = &cj->job;
			else
				c->lane_head = cj;
			c->lane_tail = cj;
			c->lane_n++;
			c->lane_bytes += cj->cost;
		}
		pthread_mutex_unlock(&c->mu);
		if (full) {
			clog_warnx_rl(c, "too many commands waiting");
			cj->drop_code = "rate_limited";
			cj->drop_msg = "too many commands waiting; slow down";
			cj->job.drop(&cj->job);
		}
		return;
	}
	c->lane_busy = 1;
	cj->in_lane = 1;
	pthread_mutex_unlock(&c->mu);
	cmd_lane_start(c, cj);
}

/* Wait for bulk output to drain; see relay.h. */
int
cmd_job_park(struct cmd_job *cj)
{
	return outq_park(cj->c, &cj->job);
}

/* A bulk reply with the ref; see relay.h. */
int
cmd_job_reply_bulk(struct cmd_job *cj, json_t *j)
{
	if (j != NULL && cj->has_ref)
		json_object_set_new(j, "ref", json_string(cj->ref));
	return cmd_send_json_bulk(cj->c, j);
}

/* Reply with the ref; see relay.h. */
int
cmd_job_reply(struct cmd_job *cj, json_t *j)
{
	if (j != NULL && cj->has_ref)
		json_object_set_new(j, "ref", json_string(cj->ref));
	return cmd_send_json(cj->c, j);
}

/* The schema's SQLSTATEs to PROTOCOL §2 error codes; see relay.h. */
const char *
cmd_sql_error(const char *sqlstate, const char **msg)
{
	static const struct {
		const char *state, *code, *msg;
	} map[] = {
		{ "PA400", "bad_request", "invalid conversation or arguments" },
		{ "PA403", "forbidden", "not a member of this conversation" },
		{ "PA404", "not_found", "no such user, group or conversation" },
		{ "PA413", "too_large", "message body too large" },
		{ "23503", "not_found", "no such user or group" },
		{ "22P02", "bad_request", "invalid value" },
		{ NULL, NULL, NULL }
	};
	int	i;

	for (i = 0; map[i].state != NULL; i++)
		if (strcmp(sqlstate, map[i].state) == 0) {
			*msg = map[i].msg;
			return map[i].code;
		}
	*msg = "internal error";
	return "internal";
}

/* Answer a failed statement; see relay.h. */
void
cmd_job_dberr(struct cmd_job *cj, struct db *db, int rc)
{
	const char	*code, *msg;

	if (rc == DB_UNAVAILABLE) {
		clog_warnx_rl(cj->c, "database: %s", db->err);
		cmd_error(cj->c, cmd_job_ref(cj), "unavailable",
		    "database unavailable; retry");
		return;
	}
	code = cmd_sql_error(db->sqlstate, &msg);
	if (strcmp(code, "internal") == 0)
		clog_warnx_rl(cj->c, "database: %s", db->err);
	cmd_error(cj->c, cmd_job_ref(cj), code, msg);
}

static void
cmd_refresh(struct conn *c, json_t *msg, const char *ref)
{
	auth_refresh(c, msg, ref);
}

static const struct {
	const char	*type;
	void		(*fn)(struct conn *, json_t *, const char *);
} cmd_table[] = {
	{ "ping", cmd_ping },
	{ "private_message", post_private_message },
	{ "group_message", post_group_message },
	{ "refresh", cmd_refresh },
	{ "auth", cmd_auth_again },
	{ "history", convo_history },
	{ "sync", convo_sync },
	{ "conversation_list", convo_list },
	{ "read", convo_read },
	{ "typing", convo_typing },
	{ "join_group", member_join },
	{ "leave_group", member_leave },
	{ "group_list", member_list },
	{ "user_list", presence_user_list },
	{ NULL, NULL }
};

/* A complete text message; see relay.h. */
void
cmd_message(struct conn *c, const char *buf, size_t len)
{
	json_t		*msg;
	const json_t	*jref;
	const char	*why, *type, *ref = NULL;
	struct rcfg	*r;
	int		 st, i;

	metrics_inc(M_CMDS);
	pthread_mutex_lock(&c->mu);
	st = c->state;
	pthread_mutex_unlock(&c->mu);
	msg = jsonutil_parse_object(buf, len, JSONUTIL_MAX_DEPTH, &why);

	if (st == CONN_NEW) {
		/* PROTOCOL §2: nothing but `auth` before authentication. */
		type = msg ? jsonutil_get_str(msg, "type") : NULL;
		if (type == NULL || strcmp(type, "auth") != 0)
			conn_close(c, 1008, "authenticate first");
		else
			auth_frame(c, msg);
		json_decref(msg);
		return;
	}
	if (st != CONN_OPEN) {
		json_decref(msg);
		return;
	}
	if (msg == NULL) {
		cmd_error(c, NULL, "bad_request", why ? why : "invalid JSON");
		return;
	}
	if ((jref = json_object_get(msg, "ref")) != NULL) {
		if (!json_is_string(jref) ||
		    strlen(json_string_value(jref)) > RELAY_REF_MAX) {
			cmd_error(c, NULL, "bad_request",
			    "\"ref\" must be a string of at most 64 bytes");
			goto done;
		}
		ref = json_string_value(jref);
	}

	r = rcfg_get();
	if (!cmd_rate_ok(c, r)) {
		if (++c->limited_run >= r->flood_limit) {
			rcfg_put(r);
			metrics_error("rate_limited");
			conn_close(c, 4029, "rate limit flood");
			goto done;
		}
		rcfg_put(r);
		cmd_error(c, ref, "rate_limited", "too many commands; slow down");
		goto done;
	}
	rcfg_put(r);
	c->limited_run = 0;

	if ((type = jsonutil_get_str(msg, "type")) == NULL) {
		cmd_error(c, ref, "bad_request", "\"type\" must be a string");
		goto done;
	}
	for (i = 0; cmd_table[i].type != NULL; i++)
		if (strcmp(cmd_table[i].type, type) == 0) {
			cmd_table[i].fn(c, msg, ref);
			goto done;
		}
	cmd_error(c, ref, "unknown_type", "unknown command type");
done:
	json_decref(msg);
}
