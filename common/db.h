/*
 * db.h: PostgreSQL connections that heal themselves.
 *
 * A struct db is one connection owned by one thread, with the statements it
 * prepares on every (re)connect.  When the server goes away, calls fail fast
 * with DB_UNAVAILABLE and the next call after a back-off (doubling from
 * 100 ms to 5 s, with jitter) tries again, so a program rides out a
 * database restart without restarting itself.
 *
 * Connections set application_name, connect_timeout and TCP keepalives /
 * tcp_user_timeout so that a silent network partition is noticed within
 * seconds; anything in the user's conninfo (or PG* variables) wins over
 * these defaults.  Nothing here logs: the caller gets db->err.
 */
#ifndef PARLEY_DB_H
#define PARLEY_DB_H

#include <stdint.h>
#include <libpq-fe.h>

enum db_result {
	DB_OK = 0,
	DB_UNAVAILABLE = -1,	/* no connection, or it broke: retry later */
	DB_ERROR = -2		/* the statement failed (db->sqlstate) */
};

struct db_stmt {
	const char	*name;
	const char	*sql;
	int		 nparams;
};

struct db {
	PGconn			*conn;
	char			*conninfo;	/* owned copy; may be "" */
	const char		*appname;
	const struct db_stmt	*stmts;		/* { NULL } terminated, or NULL */
	int64_t			 retry_at_ms;	/* monotonic; no attempt before */
	int			 backoff_ms;
	char			 sqlstate[6];	/* of the last DB_ERROR */
	char			 err[256];	/* one line, for the log */
};

/* Prepare *db (no connection yet).  Returns 0, or -1 on allocation failure. */
int	db_init(struct db *, const char *conninfo, const char *appname,
	    const struct db_stmt *stmts);

/*
 * Make sure the connection is up and the statements prepared.  Returns
 * DB_OK, or DB_UNAVAILABLE while down or backing off (db->err says why).
 */
int	db_ensure(struct db *);

/*
 * Run a prepared statement with text parameters (lengths/formats may be
 * NULL) and text results.  On DB_OK *res holds a result the caller PQclear()s
 * (tuples or command ok).  On DB_ERROR the statement failed with
 * db->sqlstate set; on DB_UNAVAILABLE the connection is closed and will be
 * retried after the back-off.  Connection-class SQLSTATEs (08xxx, 57Pxx)
 * count as DB_UNAVAILABLE.
 */
int	db_exec(struct db *, const char *stmt, int nparams,
	    const char *const *values, const int *lengths, const int *formats,
	    PGresult **res);

/* Close the connection (db_init state is kept; db_ensure reconnects). */
void	db_disconnect(struct db *);
/* Close and free everything. */
void	db_destroy(struct db *);

/*
 * Open a connection synchronously with the same defaults (used for LISTEN
 * connections and tools).  Returns the connection or NULL with err set.
 */
PGconn	*db_connect(const char *conninfo, const char *appname, char *err,
	    size_t errlen);

/*
 * The connection's effective synchronous_commit (SHOW synchronous_commit:
 * what the server, database, role and conninfo options make of it), copied
 * to out ("on", "off", "local", "remote_write", "remote_apply").  Returns
 * 0, or -1 with a one-line reason in out.  Only "off" lets COMMIT return
 * before the transaction's WAL is on disk, so that a database crash can
 * lose a transaction already reported as committed (PostgreSQL
 * documentation, "Asynchronous Commit").
 */
int	db_synchronous_commit(PGconn *, char *out, size_t outlen);

/* Is this SQLSTATE one that means "connection lost / server going away"? */
int	db_sqlstate_is_unavailable(const char *sqlstate);

#endif
