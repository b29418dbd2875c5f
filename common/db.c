/*
 * db.c: one self-healing PostgreSQL connection per thread.
 *
 * Connections are opened with PQconnectdbParams and expand_dbname: our
 * defaults (application name, connect timeout, TCP keepalives and user
 * timeout, UTF-8 client encoding) come first and the user's conninfo is the
 * last keyword, so everything it says wins; a default whose PG* environment
 * variable is set is left out so the variable wins too.  Statements are
 * prepared on every connect.  A lost connection turns into DB_UNAVAILABLE,
 * and reconnects back off from 100 ms to 5 s with jitter so a database that
 * is down is not hammered.  Before a statement is sent on an idle connection
 * that has something to read (the server's goodbye after a restart), the
 * connection is checked and replaced at once, so a restart costs callers
 * nothing if the server is already back.
 *
 * Nothing here logs: messages land in db->err.
 */
#include "config.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "util.h"

#define DB_BACKOFF_MIN_MS	100
#define DB_BACKOFF_MAX_MS	5000

/* First line of a libpq message into buf, without "ERROR:  " noise. */
static void
db_oneline(const char *msg, char *buf, size_t len)
{
	size_t	i;

	if (msg == NULL || *msg == '\0')
		msg = "unknown error";
	util_strlcpy(buf, msg, len);
	for (i = 0; buf[i] != '\0'; i++)
		if (buf[i] == '\n' || buf[i] == '\r') {
			buf[i] = '\0';
			break;
		}
}

/* Notice processor that drops server notices: this module never logs. */
static void
db_quiet(void *arg, const char *message)
{
	(void)arg, (void)message;
}

/* Connection-class SQLSTATEs: 08xxx, and 57P01..57P05 (server going away). */
int
db_sqlstate_is_unavailable(const char *st)
{
	if (st == NULL)
		return 0;
	if (strncmp(st, "08", 2) == 0)
		return 1;
	return strncmp(st, "57P0", 4) == 0 && st[4] >= '1' && st[4] <= '5' &&
	    st[5] == '\0';
}

/* Open a connection with the defaults; see db.h. */
PGconn *
db_connect(const char *conninfo, const char *appname, char *err, size_t errlen)
{
	static const struct {
		const char	*key, *val, *env;
	} defs[] = {
		{ "application_name", NULL, "PGAPPNAME" },
		{ "connect_timeout", "5", "PGCONNECT_TIMEOUT" },
		{ "client_encoding", "UTF8", "PGCLIENTENCODING" },
		{ "keepalives", "1", NULL },
		{ "keepalives_idle", "10", NULL },
		{ "keepalives_interval", "5", NULL },
		{ "keepalives_count", "3", NULL },
		{ "tcp_user_timeout", "15000", NULL },
	};
	const char	*keys[sizeof(defs) / sizeof(defs[0]) + 2];
	const char	*vals[sizeof(defs) / sizeof(defs[0]) + 2];
	PGconn		*conn;
	size_t		 i, n = 0;

	for (i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
		const char *v = defs[i].val;

		if (defs[i].env != NULL && getenv(defs[i].env) != NULL)
			continue;
		if (i == 0)
			v = appname;
		if (v == NULL || *v == '\0')
			continue;
		keys[n] = defs[i].key;
		vals[n++] = v;
	}
	/*
	 * Last, so that with expand_dbname its settings override ours
	 * (libpq: "previously processed key words will be overridden").
	 */
	if (conninfo != NULL && *conninfo != '\0') {
		keys[n] = "dbname";
		vals[n++] = conninfo;
	}
	keys[n] = NULL;
	vals[n] = NULL;

	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL) {
		util_strlcpy(err, "out of memory", errlen);
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		db_oneline(PQerrorMessage(conn), err, errlen);
		PQfinish(conn);
		return NULL;
	}
	/* libpq would print notices (and a server's goodbye) to stderr. */
	PQsetNoticeProcessor(conn, db_quiet, NULL);
	return conn;
}

/* SHOW synchronous_commit; see db.h. */
int
db_synchronous_commit(PGconn *conn, char *out, size_t outlen)
{
	PGresult	*res;
	int		 rc = -1;

	if (conn == NULL) {
		util_strlcpy(out, "no connection", outlen);
		return -1;
	}
	res = PQexec(conn, "SHOW synchronous_commit");
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		db_oneline(res ? PQresultErrorMessage(res) :
		    PQerrorMessage(conn), out, outlen);
		goto done;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 1 ||
	    PQgetisnull(res, 0, 0)) {
		util_strlcpy(out, "SHOW synchronous_commit: no value", outlen);
		goto done;
	}
	util_strlcpy(out, PQgetvalue(res, 0, 0), outlen);
	rc = 0;
done:
	PQclear(res);
	return rc;
}

/* Prepare *db without connecting; see db.h. */
int
db_init(struct db *db, const char *conninfo, const char *appname,
    const struct db_stmt *stmts)
{
	memset(db, 0, sizeof(*db));
	if ((db->conninfo = strdup(conninfo ? conninfo : "")) == NULL)
		return -1;
	db->appname = appname;
	db->stmts = stmts;
	return 0;
}

/* Close the connection; the next db_ensure reconnects. */
void
db_disconnect(struct db *db)
{
	if (db->conn != NULL) {
		PQfinish(db->conn);
		db->conn = NULL;
	}
}

/* Close and free everything, wiping the conninfo (it may hold a password). */
void
db_destroy(struct db *db)
{
	db_disconnect(db);
	if (db->conninfo != NULL) {
		explicit_bzero(db->conninfo, strlen(db->conninfo));
		free(db->conninfo);
	}
	memset(db, 0, sizeof(*db));
}

/* The next connect attempt waits: double the back-off, add jitter. */
static void
db_backoff(struct db *db)
{
	uint32_t	r = 0;
	int		delay;

	if (db->backoff_ms < DB_BACKOFF_MIN_MS)
		db->backoff_ms = DB_BACKOFF_MIN_MS;
	else if ((db->backoff_ms *= 2) > DB_BACKOFF_MAX_MS)
		db->backoff_ms = DB_BACKOFF_MAX_MS;
	/* Jitter: 75% to 100% of the back-off, so workers spread out. */
	(void)util_random(&r, sizeof(r));
	delay = db->backoff_ms - (int)(r % (uint32_t)(db->backoff_ms / 4 + 1));
	db->retry_at_ms = util_mono_ms() + delay;
}

/*
 * Is an idle, healthy-looking connection actually dead?  An idle connection
 * only receives something unasked when the server says goodbye (a FATAL
 * such as 57P01, then end of file) or for notifications, so input pending
 * here is read; end of file shows up as a failed PQconsumeInput.
 */
static int
db_conn_dead(PGconn *conn)
{
	struct pollfd	 pfd;
	PGnotify	*nt;
	int		 i;

	if (PQstatus(conn) != CONNECTION_OK)
		return 1;
	if ((pfd.fd = PQsocket(conn)) < 0)
		return 1;
	for (i = 0; i < 4; i++) {
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, 0) <= 0)
			break;	/* nothing (more) pending */
		if (!PQconsumeInput(conn))
			return 1;
		while ((nt = PQnotifies(conn)) != NULL)
			PQfreemem(nt);
	}
	return PQstatus(conn) != CONNECTION_OK;
}

/* Connect (respecting the back-off) and prepare; see db.h. */
int
db_ensure(struct db *db)
{
	const struct db_stmt	*st;
	PGresult		*res;
	char			 msg[200];
	int64_t			 now;

	if (db->conn != NULL) {
		if (!db_conn_dead(db->conn))
			return DB_OK;
		db_disconnect(db);
	}
	now = util_mono_ms();
	if (now < db->retry_at_ms) {
		/* Keep db->err from the failure that started the back-off. */
		return DB_UNAVAILABLE;
	}
	db->conn = db_connect(db->conninfo, db->appname, msg, sizeof(msg));
	if (db->conn == NULL) {
		snprintf(db->err, sizeof(db->err), "database unavailable: %s", msg);
		db_backoff(db);
		return DB_UNAVAILABLE;
	}
	for (st = db->stmts; st != NULL && st->name != NULL; st++) {
		res = PQprepare(db->conn, st->name, st->sql, st->nparams, NULL);
		if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
			db_oneline(res ? PQresultErrorMessage(res) :
			    PQerrorMessage(db->conn), msg, sizeof(msg));
			snprintf(db->err, sizeof(db->err), "prepare %s: %s",
			    st->name, msg);
			PQclear(res);
			db_disconnect(db);
			db_backoff(db);
			return DB_UNAVAILABLE;
		}
		PQclear(res);
	}
	db->backoff_ms = 0;
	db->retry_at_ms = 0;
	db->err[0] = '\0';
	return DB_OK;
}

/* Run a prepared statement; see db.h. */
int
db_exec(struct db *db, const char *stmt, int nparams,
    const char *const *values, const int *lengths, const int *formats,
    PGresult **resp)
{
	PGresult	*res;
	const char	*st;
	char		 msg[200];
	int		 rc;

	*resp = NULL;
	db->sqlstate[0] = '\0';
	if ((rc = db_ensure(db)) != DB_OK)
		return rc;
	res = PQexecPrepared(db->conn, stmt, nparams, values, lengths, formats, 0);
	switch (res ? PQresultStatus(res) : PGRES_FATAL_ERROR) {
	case PGRES_TUPLES_OK:
	case PGRES_COMMAND_OK:
		*resp = res;
		return DB_OK;
	default:
		break;
	}
	st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	db_oneline(res ? PQresultErrorMessage(res) : PQerrorMessage(db->conn),
	    msg, sizeof(msg));
	if (db_sqlstate_is_unavailable(st) || PQstatus(db->conn) != CONNECTION_OK ||
	    st == NULL) {
		snprintf(db->err, sizeof(db->err), "database unavailable: %s", msg);
		if (st != NULL)
			util_strlcpy(db->sqlstate, st, sizeof(db->sqlstate));
		PQclear(res);
		db_disconnect(db);
		/* The next call reconnects at once; failures then back off. */
		return DB_UNAVAILABLE;
	}
	util_strlcpy(db->sqlstate, st, sizeof(db->sqlstate));
	snprintf(db->err, sizeof(db->err), "%s: %s", stmt, msg);
	PQclear(res);
	return DB_ERROR;
}
