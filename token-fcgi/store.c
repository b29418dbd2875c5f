/*
 * store.c: the three SQL functions the token service calls, and nothing else.
 *
 * parley.login, parley.session_lookup and parley.logout are the contract
 * with the schema (briefing, "SQL contract"); session_lookup in particular
 * may be redefined by an integrator, so only its declared columns are used.
 * Statements are prepared once per connection.  The session hash goes as a
 * binary bytea parameter, so no hex copy of it exists.  Failures are logged
 * here, rate-limited, with the statement name and SQLSTATE only: a database
 * message can quote parameter values, and those are secrets.  The first
 * connection that answers is also asked for synchronous_commit, once per
 * process (store_check_durable).
 */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "token.h"

const struct db_stmt store_stmts[] = {
	{ "login",
	  "SELECT status, user_id, user_name, session_id,"
	  " floor(extract(epoch FROM expires_at))::bigint, retry_after"
	  " FROM parley.login($1::text, $2::text, $3::text, $4::bytea,"
	  " $5::interval, $6::text)", 6 },
	{ "session",
	  "SELECT session_id, user_id, user_name,"
	  " floor(extract(epoch FROM expires_at))::bigint"
	  " FROM parley.session_lookup($1::bytea)", 1 },
	{ "logout",
	  "SELECT parley.logout($1::bytea)", 1 },
	{ NULL, NULL, 0 }
};

/* The one-line consequence of synchronous_commit = off (parley-token(8)). */
#define STORE_DURABLE_WHY	"synchronous_commit is off for parley-token's " \
	"database connection: a database crash can undo a logout already " \
	"answered 204 (the session stays valid until it expires) and lose " \
	"new sessions and login throttle counts; serving anyway, as no " \
	"message passes through here (set synchronous_commit = on: " \
	"postgresql.conf, ALTER DATABASE or ALTER ROLE)"

/* 0: not checked yet, 1: being checked, 2: done (this process). */
static atomic_int store_durable_state;

/* One SHOW synchronous_commit per process; see token.h. */
void
store_check_durable(PGconn *conn)
{
	char	val[64];
	int	expect = 0;

	if (atomic_load_explicit(&store_durable_state,
	    memory_order_acquire) != 0 ||
	    !atomic_compare_exchange_strong(&store_durable_state, &expect, 1))
		return;
	if (db_synchronous_commit(conn, val, sizeof(val)) < 0) {
		/* A connection that just broke: the next one is asked. */
		atomic_store(&store_durable_state, 0);
		return;
	}
	if (strcmp(val, "off") == 0)
		log_error("%s", STORE_DURABLE_WHY);
	else
		log_debug("database synchronous_commit = %s", val);
	atomic_store(&store_durable_state, 2);
}

/* Map and log a db_exec failure. */
static enum store_result
store_fail(struct db *db, const char *stmt, int rc)
{
	if (rc == DB_UNAVAILABLE) {
		log_warnx_ratelimited(10, "%s", db->err);
		return STORE_UNAVAILABLE;
	}
	log_warnx_ratelimited(10, "statement %s failed: SQLSTATE %s", stmt,
	    db->sqlstate[0] ? db->sqlstate : "?");
	return STORE_ERROR;
}

/* A result that does not have the shape the contract promises. */
static enum store_result
store_bad_shape(PGresult *res, const char *stmt)
{
	log_warnx_ratelimited(10, "statement %s: unexpected result shape "
	    "(%d rows, %d columns)", stmt, PQntuples(res), PQnfields(res));
	PQclear(res);
	return STORE_ERROR;
}

/* Fill *u from columns (sid, id, name, expires_at) starting at `first`. */
static int
store_user_cols(PGresult *res, int sid, int id, int name, int exp,
    struct store_user *u)
{
	if (PQgetisnull(res, 0, sid) || PQgetisnull(res, 0, id) ||
	    PQgetisnull(res, 0, name) || PQgetisnull(res, 0, exp))
		return -1;
	if (util_parse_int64(PQgetvalue(res, 0, id), &u->id) < 0 ||
	    util_parse_int64(PQgetvalue(res, 0, exp), &u->expires_at) < 0)
		return -1;
	if ((size_t)PQgetlength(res, 0, name) >= sizeof(u->name) ||
	    (size_t)PQgetlength(res, 0, sid) >= sizeof(u->sid) ||
	    PQgetlength(res, 0, sid) == 0)
		return -1;
	util_strlcpy(u->name, PQgetvalue(res, 0, name), sizeof(u->name));
	util_strlcpy(u->sid, PQgetvalue(res, 0, sid), sizeof(u->sid));
	return 0;
}

/* parley.login(); see token.h. */
enum store_result
store_login(struct db *db, const struct credentials *cred, const char *addr,
    const unsigned char hash[UTIL_SHA256_LEN], int64_t ttl_s,
    const char *user_agent, struct store_login *out)
{
	const char	*values[6];
	int		 lengths[6] = { 0, 0, 0, UTIL_SHA256_LEN, 0, 0 };
	int		 formats[6] = { 0, 0, 0, 1, 0, 0 };
	char		 ttl[32];
	const char	*status;
	PGresult	*res;
	int		 rc;

	memset(out, 0, sizeof(*out));
	snprintf(ttl, sizeof(ttl), "%lld seconds", (long long)ttl_s);
	values[0] = cred->username;
	values[1] = cred->password;
	values[2] = addr;
	values[3] = (const char *)hash;
	values[4] = ttl;
	values[5] = user_agent;
	rc = db_exec(db, "login", 6, values, lengths, formats, &res);
	if (rc != DB_OK)
		return store_fail(db, "login", rc);
	store_check_durable(db->conn);
	if (PQntuples(res) != 1 || PQnfields(res) != 6 || PQgetisnull(res, 0, 0))
		return store_bad_shape(res, "login");
	status = PQgetvalue(res, 0, 0);
	if (strcmp(status, "ok") == 0) {
		out->status = STORE_LOGIN_OK;
		if (store_user_cols(res, 3, 1, 2, 4, &out->user) < 0)
			return store_bad_shape(res, "login");
	} else if (strcmp(status, "invalid_credentials") == 0) {
		out->status = STORE_LOGIN_INVALID;
	} else if (strcmp(status, "too_many_attempts") == 0) {
		out->status = STORE_LOGIN_THROTTLED;
		if (PQgetisnull(res, 0, 5) ||
		    util_parse_int64(PQgetvalue(res, 0, 5), &out->retry_after) < 0)
			out->retry_after = 60;
		if (out->retry_after < 1)
			out->retry_after = 1;
	} else {
		return store_bad_shape(res, "login");
	}
	PQclear(res);
	return STORE_OK;
}

/* parley.session_lookup(); see token.h. */
enum store_result
store_session(struct db *db, const unsigned char hash[UTIL_SHA256_LEN],
    struct store_user *out)
{
	const char	*values[1] = { (const char *)hash };
	int		 lengths[1] = { UTIL_SHA256_LEN };
	int		 formats[1] = { 1 };
	PGresult	*res;
	int		 rc;

	memset(out, 0, sizeof(*out));
	rc = db_exec(db, "session", 1, values, lengths, formats, &res);
	if (rc != DB_OK)
		return store_fail(db, "session", rc);
	store_check_durable(db->conn);
	if (PQntuples(res) == 0) {
		PQclear(res);
		return STORE_NONE;
	}
	if (PQnfields(res) != 4 || store_user_cols(res, 0, 1, 2, 3, out) < 0)
		return store_bad_shape(res, "session");
	PQclear(res);
	return STORE_OK;
}

/* parley.logout(); see token.h. */
enum store_result
store_logout(struct db *db, const unsigned char hash[UTIL_SHA256_LEN])
{
	const char	*values[1] = { (const char *)hash };
	int		 lengths[1] = { UTIL_SHA256_LEN };
	int		 formats[1] = { 1 };
	PGresult	*res;
	int		 rc, revoked;

	rc = db_exec(db, "logout", 1, values, lengths, formats, &res);
	if (rc != DB_OK)
		return store_fail(db, "logout", rc);
	store_check_durable(db->conn);
	if (PQntuples(res) != 1 || PQnfields(res) != 1)
		return store_bad_shape(res, "logout");
	revoked = !PQgetisnull(res, 0, 0) && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return revoked ? STORE_OK : STORE_NONE;
}
