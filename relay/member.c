/*
 * member.c: the group membership commands of PROTOCOL §2: join_group
 * (public groups only; private ones by parley.add_member), leave_group and
 * group_list, through the schema's join_group, leave_group and group_list.
 *
 * The membership change itself reaches every relay as a parley_member
 * notification (listen.c), which updates the delivery cache and tells the
 * members (member_joined / member_left); the reply here only confirms.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

struct member_job {
	struct cmd_job	 cj;
	int64_t		 gid;
	int		 join;
};

static void
member_run(struct job *job, struct db *db)
{
	struct member_job	*m = (struct member_job *)job;
	const char		*v[2];
	char			 g[24], u[24];
	PGresult		*res = NULL;
	int			 rc;

	snprintf(g, sizeof(g), "%lld", (long long)m->gid);
	snprintf(u, sizeof(u), "%lld", (long long)m->cj.uid);
	v[0] = g;
	v[1] = u;
	rc = dbpool_exec(db, m->join ? STMT_JOIN : STMT_LEAVE, 2, v, &res);
	if (rc != DB_OK)
		cmd_job_dberr(&m->cj, db, rc);
	else
		cmd_job_reply(&m->cj, json_pack("{s:s, s:I}", "type",
		    m->join ? "group_joined" : "group_left",
		    "group", (json_int_t)m->gid));
	PQclear(res);
	cmd_job_free(m);
}

static void
member_change(struct conn *c, json_t *msg, const char *ref, int join)
{
	struct member_job	*m;
	int64_t			 gid;

	if (jsonutil_get_int(msg, "group", &gid) == -1 || gid <= 0) {
		cmd_error(c, ref, "bad_request",
		    "\"group\" must be a positive integer");
		return;
	}
	if ((m = cmd_job_new(c, ref, sizeof(*m), member_run)) == NULL)
		return;
	m->gid = gid;
	m->join = join;
	cmd_job_submit(&m->cj);
}

/* `join_group` {group}; see relay.h. */
void
member_join(struct conn *c, json_t *msg, const char *ref)
{
	member_change(c, msg, ref, 1);
}

/* `leave_group` {group}; see relay.h. */
void
member_leave(struct conn *c, json_t *msg, const char *ref)
{
	member_change(c, msg, ref, 0);
}

static void
member_list_run(struct job *job, struct db *db)
{
	struct cmd_job	*cj = (struct cmd_job *)job;
	const char	*v[1];
	char		 a[24];
	PGresult	*res = NULL;
	json_t		*arr;
	int		 rc, i, member;

	if ((rc = cmd_job_park(cj)) == 1)
		return;			/* runs again when output drained */
	if (rc == -1)
		goto done;
	snprintf(a, sizeof(a), "%lld", (long long)cj->uid);
	v[0] = a;
	if ((rc = dbpool_exec(db, STMT_GROUPS, 1, v, &res)) != DB_OK) {
		cmd_job_dberr(cj, db, rc);
		goto done;
	}
	if ((arr = json_array()) == NULL)
		goto done;
	for (i = 0; i < PQntuples(res); i++) {
		member = strcmp(PQgetvalue(res, i, 3), "t") == 0;
		json_array_append_new(arr, json_pack("{s:I, s:s, s:s, s:b, s:o}",
		    "id", (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10),
		    "name", PQgetvalue(res, i, 1),
		    "visibility", PQgetvalue(res, i, 2),
		    "member", member,
		    "role", member && !PQgetisnull(res, i, 4) ?
		    json_string(PQgetvalue(res, i, 4)) : json_null()));
	}
	cmd_job_reply_bulk(cj, json_pack("{s:s, s:o}", "type", "group_list",
	    "groups", arr));
done:
	PQclear(res);
	cmd_job_free(cj);
}

/* `group_list`; see relay.h. */
void
member_list(struct conn *c, json_t *msg, const char *ref)
{
	struct cmd_job	*cj;

	(void)msg;
	if ((cj = cmd_job_new(c, ref, sizeof(*cj), member_list_run)) != NULL)
		cmd_job_submit(cj);
}
