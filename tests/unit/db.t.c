/*
 * db.t.c: unit tests of common/db.c.
 *
 * Without a server: SQLSTATE classification, a refused connection failing
 * fast with a message, and the back-off (no new attempt before it expires,
 * doubling up to 5 s).  With a private PostgreSQL started here (initdb into
 * a temporary directory, as the postgres user when run as root; skipped if
 * $PG_BINDIR has no initdb): the connection defaults and that the user's
 * conninfo and PG* variables beat them, prepared statements, DB_ERROR with
 * SQLSTATE, a terminated backend replaced without the caller noticing, and
 * riding out a server restart.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "tap.h"
#include "util.h"

/* A TCP port on 127.0.0.1 that nothing listens on (bound, then closed). */
static int
closed_port(void)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);
	int			fd, port;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(fd, (struct sockaddr *)&sin, &len);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

static void
test_sqlstate(void)
{
	is_int(db_sqlstate_is_unavailable("08006"), 1, "08006 connection failure");
	is_int(db_sqlstate_is_unavailable("08P01"), 1, "08P01 protocol violation");
	is_int(db_sqlstate_is_unavailable("57P01"), 1, "57P01 admin shutdown");
	is_int(db_sqlstate_is_unavailable("57P02"), 1, "57P02 crash shutdown");
	is_int(db_sqlstate_is_unavailable("57P03"), 1, "57P03 cannot connect now");
	is_int(db_sqlstate_is_unavailable("57014"), 0, "57014 query canceled is not");
	is_int(db_sqlstate_is_unavailable("23505"), 0, "23505 unique violation is not");
	is_int(db_sqlstate_is_unavailable("42883"), 0, "42883 undefined function is not");
	is_int(db_sqlstate_is_unavailable(NULL), 0, "NULL is not");
}

static void
test_refused(void)
{
	static const struct db_stmt stmts[] = {
		{ "one", "SELECT 1", 0 }, { NULL, NULL, 0 }
	};
	struct db	 db;
	PGresult	*res = (PGresult *)1;
	char		 conninfo[128], err[256];
	int64_t		 t0, first;
	PGconn		*c;
	int		 r;

	snprintf(conninfo, sizeof(conninfo),
	    "host=127.0.0.1 port=%d dbname=x user=x", closed_port());
	t0 = util_mono_ms();
	c = db_connect(conninfo, "parley-test", err, sizeof(err));
	ok(c == NULL, "db_connect to a closed port fails");
	ok(strstr(err, "127.0.0.1") != NULL && strchr(err, '\n') == NULL,
	    "with a one-line message naming the host: %s", err);
	ok(util_mono_ms() - t0 < 3000, "and fails fast");

	ok(db_init(&db, conninfo, "parley-test", stmts) == 0, "db_init");
	is_int(db_ensure(&db), DB_UNAVAILABLE, "db_ensure: unavailable");
	ok(strstr(db.err, "database unavailable") != NULL, "db->err says why: %s", db.err);
	first = db.retry_at_ms - util_mono_ms();
	ok(first > 0 && first <= 100, "first back-off is at most 100 ms (%lld)",
	    (long long)first);
	is_int(db.backoff_ms, 100, "back-off starts at 100 ms");
	r = db_exec(&db, "one", 0, NULL, NULL, NULL, &res);
	is_int(r, DB_UNAVAILABLE, "db_exec during the back-off: unavailable");
	ok(res == NULL, "  and *res is NULL");
	is_int(db.backoff_ms, 100, "  without a new attempt");

	db.retry_at_ms = 0;
	db_ensure(&db);
	is_int(db.backoff_ms, 200, "the next failure doubles it");
	db.backoff_ms = 4000;
	db.retry_at_ms = 0;
	db_ensure(&db);
	is_int(db.backoff_ms, 5000, "capped at 5 s");
	ok(db.retry_at_ms - util_mono_ms() >= 3700, "with at most 25%% jitter");
	db_destroy(&db);
	ok(db.conninfo == NULL && db.conn == NULL, "db_destroy clears everything");

	ok(db_connect("host=127.0.0.1 port=notaport", "x", err, sizeof(err)) == NULL &&
	    err[0] != '\0', "a bad conninfo fails with a message: %s", err);
}

/* ------------------------------------------------------------------ live */

static char	pgdir[] = "/tmp/parley-db-test-XXXXXX";
static char	pgbin[512];
static int	pgport;
static int	pg_running;

/* Run a PostgreSQL tool as the postgres user when we are root. */
static int
pg_run(const char *tail)
{
	char	cmd[4096];

	snprintf(cmd, sizeof(cmd), "%s%s/%s", geteuid() == 0 ?
	    "runuser -u postgres -- " : "", pgbin, tail);
	return system(cmd);
}

static int
pg_start(void)
{
	char	opts[256];

	snprintf(opts, sizeof(opts), "pg_ctl -D %s/data -l %s/pg.log -w -t 30 "
	    "-o \"-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off\" start "
	    ">/dev/null", pgdir, pgdir, pgport, pgdir);
	if (pg_run(opts) != 0)
		return -1;
	pg_running = 1;
	return 0;
}

static void
pg_stop(const char *mode)
{
	char	opts[256];

	if (!pg_running)
		return;
	snprintf(opts, sizeof(opts), "pg_ctl -D %s/data -m %s -w stop >/dev/null",
	    pgdir, mode);
	pg_run(opts);
	pg_running = 0;
}

static void
pg_cleanup(void)
{
	char	cmd[600];

	pg_stop("immediate");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pgdir);
	if (system(cmd) != 0)
		diag("could not remove %s", pgdir);
}

/* initdb + start; returns 0, or -1 (the caller skips). */
static int
pg_setup(void)
{
	const char	*bindir = getenv("PG_BINDIR");
	struct passwd	*pw;
	char		 path[700], opts[700];

	snprintf(pgbin, sizeof(pgbin), "%s", bindir && *bindir ? bindir :
	    "/usr/lib/postgresql/15/bin");
	snprintf(path, sizeof(path), "%s/initdb", pgbin);
	if (access(path, X_OK) != 0 || mkdtemp(pgdir) == NULL)
		return -1;
	if (geteuid() == 0) {
		if ((pw = getpwnam("postgres")) == NULL ||
		    chown(pgdir, pw->pw_uid, pw->pw_gid) != 0)
			return -1;
	}
	atexit(pg_cleanup);
	snprintf(opts, sizeof(opts), "initdb -D %s/data -A trust -U postgres "
	    "-E UTF8 --no-sync >%s/initdb.log 2>&1", pgdir, pgdir);
	if (pg_run(opts) != 0) {
		diag("initdb failed; see %s/initdb.log", pgdir);
		return -1;
	}
	pgport = closed_port();
	return pg_start();
}

/* The value libpq uses for one connection option. */
static char *
conn_opt(PGconn *c, const char *key)
{
	static char		 val[128];
	PQconninfoOption	*o, *all = PQconninfo(c);

	val[0] = '\0';
	for (o = all; o && o->keyword; o++)
		if (strcmp(o->keyword, key) == 0 && o->val)
			snprintf(val, sizeof(val), "%s", o->val);
	PQconninfoFree(all);
	return val;
}

static char *
query1(PGconn *c, const char *sql)
{
	static char	 val[128];
	PGresult	*r = PQexec(c, sql);

	snprintf(val, sizeof(val), "%s", PQresultStatus(r) == PGRES_TUPLES_OK &&
	    PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "(error)");
	PQclear(r);
	return val;
}

static void
test_live_defaults(const char *base)
{
	char	 ci[300], err[256];
	PGconn	*c;

	c = db_connect(base, "parley-test", err, sizeof(err));
	if (!ok(c != NULL, "db_connect to the private server"))
		diag("%s", err);
	if (c == NULL)
		return;
	is_str(query1(c, "SHOW application_name"), "parley-test",
	    "application_name is the program's");
	is_str(conn_opt(c, "connect_timeout"), "5", "connect_timeout 5");
	is_str(conn_opt(c, "keepalives"), "1", "keepalives on");
	is_str(conn_opt(c, "keepalives_idle"), "10", "keepalives_idle 10");
	is_str(conn_opt(c, "keepalives_interval"), "5", "keepalives_interval 5");
	is_str(conn_opt(c, "keepalives_count"), "3", "keepalives_count 3");
	is_str(conn_opt(c, "tcp_user_timeout"), "15000", "tcp_user_timeout 15 s");
	is_str(query1(c, "SHOW client_encoding"), "UTF8", "client_encoding UTF8");
	PQfinish(c);

	snprintf(ci, sizeof(ci), "%s application_name=mine keepalives_idle=30 "
	    "connect_timeout=2", base);
	c = db_connect(ci, "parley-test", err, sizeof(err));
	ok(c && strcmp(query1(c, "SHOW application_name"), "mine") == 0 &&
	    strcmp(conn_opt(c, "keepalives_idle"), "30") == 0 &&
	    strcmp(conn_opt(c, "connect_timeout"), "2") == 0,
	    "the user's conninfo beats the defaults");
	PQfinish(c);

	snprintf(ci, sizeof(ci), "postgresql://postgres@127.0.0.1:%d/postgres"
	    "?application_name=fromuri", pgport);
	c = db_connect(ci, "parley-test", err, sizeof(err));
	ok(c && strcmp(query1(c, "SHOW application_name"), "fromuri") == 0,
	    "a URI conninfo works and beats the defaults");
	PQfinish(c);

	setenv("PGAPPNAME", "fromenv", 1);
	setenv("PGCONNECT_TIMEOUT", "7", 1);
	c = db_connect(base, "parley-test", err, sizeof(err));
	ok(c && strcmp(query1(c, "SHOW application_name"), "fromenv") == 0 &&
	    strcmp(conn_opt(c, "connect_timeout"), "7") == 0,
	    "PGAPPNAME and PGCONNECT_TIMEOUT beat the defaults");
	PQfinish(c);
	unsetenv("PGAPPNAME");
	unsetenv("PGCONNECT_TIMEOUT");
}

static void
test_live_exec(const char *base)
{
	static const struct db_stmt stmts[] = {
		{ "div", "SELECT 10 / $1::int", 1 },
		{ "pid", "SELECT pg_backend_pid()", 0 },
		{ NULL, NULL, 0 }
	};
	static const struct db_stmt bad[] = {
		{ "nope", "SELECT parley_no_such_function()", 0 },
		{ NULL, NULL, 0 }
	};
	struct db	 db;
	PGresult	*res;
	const char	*two[] = { "2" }, *zero[] = { "0" };
	char		 oldpid[32], err[256], sql[100];
	PGconn		*admin;
	int		 r, i;
	int64_t		 t0;

	db_init(&db, base, "parley-test", stmts);
	is_int(db_ensure(&db), DB_OK, "db_ensure connects and prepares");
	r = db_exec(&db, "div", 1, two, NULL, NULL, &res);
	ok(r == DB_OK && res && strcmp(PQgetvalue(res, 0, 0), "5") == 0,
	    "db_exec of a prepared statement");
	PQclear(res);
	r = db_exec(&db, "div", 1, zero, NULL, NULL, &res);
	ok(r == DB_ERROR && strcmp(db.sqlstate, "22012") == 0 && res == NULL,
	    "a failing statement: DB_ERROR with SQLSTATE 22012 (%s)", db.err);
	ok(strstr(db.err, "division by zero") != NULL && strchr(db.err, '\n') == NULL,
	    "db->err is one line with the message");
	r = db_exec(&db, "div", 1, two, NULL, NULL, &res);
	is_int(r, DB_OK, "the connection is still usable after DB_ERROR");
	PQclear(res);

	/* Terminate our backend from another session. */
	r = db_exec(&db, "pid", 0, NULL, NULL, NULL, &res);
	snprintf(oldpid, sizeof(oldpid), "%s", r == DB_OK ? PQgetvalue(res, 0, 0) : "0");
	PQclear(res);
	admin = db_connect(base, "parley-admin", err, sizeof(err));
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", oldpid);
	is_str(admin ? query1(admin, sql) : NULL, "t", "terminate the backend");
	PQfinish(admin);
	usleep(200 * 1000);	/* let the server's goodbye arrive */
	r = db_exec(&db, "pid", 0, NULL, NULL, NULL, &res);
	ok(r == DB_OK && strcmp(PQgetvalue(res, 0, 0), oldpid) != 0,
	    "after the backend was terminated, the next call reconnects by itself");
	PQclear(res);

	/* A server restart. */
	pg_stop("fast");
	t0 = util_mono_ms();
	r = db_exec(&db, "div", 1, two, NULL, NULL, &res);
	is_int(r, DB_UNAVAILABLE, "server stopped: DB_UNAVAILABLE");
	ok(util_mono_ms() - t0 < 2000, "  quickly");
	r = db_exec(&db, "div", 1, two, NULL, NULL, &res);
	is_int(r, DB_UNAVAILABLE, "still down: DB_UNAVAILABLE");
	ok(strstr(db.err, "unavailable") != NULL, "  db->err says so: %s", db.err);
	if (!ok(pg_start() == 0, "restart the server"))
		goto out;
	for (i = 0; i < 200; i++) {
		r = db_exec(&db, "div", 1, two, NULL, NULL, &res);
		if (r == DB_OK)
			break;
		usleep(50 * 1000);
	}
	ok(r == DB_OK && strcmp(PQgetvalue(res, 0, 0), "5") == 0,
	    "after the restart the statement works again (re-prepared)");
	PQclear(res);
	is_int(db.backoff_ms, 0, "and the back-off is reset");
out:
	db_destroy(&db);

	db_init(&db, base, "parley-test", bad);
	is_int(db_ensure(&db), DB_UNAVAILABLE, "a statement that cannot be prepared: unavailable");
	ok(strstr(db.err, "prepare nope") != NULL, "  db->err names it: %s", db.err);
	ok(db.conn == NULL, "  and the connection is closed");
	db_destroy(&db);
}

static void
test_live(void)
{
	char	base[200];

	if (pg_setup() < 0) {
		skip(1, "no PostgreSQL server binaries (PG_BINDIR)");
		return;
	}
	snprintf(base, sizeof(base), "host=127.0.0.1 port=%d user=postgres "
	    "dbname=postgres", pgport);
	test_live_defaults(base);
	test_live_exec(base);
}

int
main(void)
{
	test_sqlstate();
	test_refused();
	test_live();
	done_testing();
	return exit_status();
}
