/*
 * main.c: parley-relay's launcher.  Loads the configuration, checks that
 * the database makes commits durable, starts the parts in dependency order
 * (writers, database pool, listener, timer, then the server that lets
 * clients in), and turns signals into actions on the main thread: SIGHUP
 * reloads keys and settings, SIGTERM/SIGINT close every WebSocket with 1001
 * and exit 0 within 5 s.  Nothing else lives here.
 *
 * Durability (parley-relay(8), DATABASE): an `ack` promises that the
 * message is committed, which synchronous_commit = off breaks (a database
 * crash can lose the last few hundred milliseconds of commits).  So the
 * relay refuses to start when its connection shows that setting; when the
 * database is not reachable at startup (the relay starts anyway and heals
 * itself), a thread checks on the first connection that succeeds and logs
 * the consequence at error level.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relay.h"

#define MAIN_DRAIN_MS		3000
#define MAIN_DURABLE_RETRY_MS	1000	/* checker: first wait, doubling */
#define MAIN_DURABLE_RETRY_MAX	5000	/* up to (db.c's back-off too) */
#define MAIN_DURABLE_JOIN_MS	2000	/* at exit: a connect in progress */

#define MAIN_DURABLE_WHY	"synchronous_commit is off for the relay's " \
	"database connection: a message acknowledged to its sender can be " \
	"lost in a database crash; set synchronous_commit = on (postgresql.conf, " \
	"ALTER DATABASE or ALTER ROLE)"

/* The late check when the database was unreachable at startup. */
static struct {
	pthread_t	 tid;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	int		 started;
	int		 stop;		/* under mu */
} main_durable = {
	.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
};

/*
 * Connect once and read synchronous_commit: 1 when it is off, 0 when
 * commits are durable, -1 when the database cannot be asked (err set).
 */
static int
main_durable_check(const char *conninfo, char *err, size_t errlen)
{
	PGconn	*conn;
	char	 val[64];
	int	 rc;

	if ((conn = db_connect(conninfo, RELAY_PROGNAME, err, errlen)) == NULL)
		return -1;
	if (db_synchronous_commit(conn, val, sizeof(val)) < 0) {
		snprintf(err, errlen, "SHOW synchronous_commit: %s", val);
		rc = -1;
	} else {
		rc = strcmp(val, "off") == 0;
		log_debug("database synchronous_commit = %s", val);
	}
	PQfinish(conn);
	return rc;
}

/*
 * Until the first connection that answers: then check once and stop.  arg
 * is the thread's own copy of the conninfo (it may outlive rcfg_boot when
 * a connect hangs at exit), wiped and freed here.
 */
static void *
main_durable_thread(void *arg)
{
	struct timespec	 ts;
	char		*conninfo = arg;
	char		 err[256];
	int		 rc, wait_ms = MAIN_DURABLE_RETRY_MS;

	for (;; wait_ms = wait_ms * 2 > MAIN_DURABLE_RETRY_MAX ?
	    MAIN_DURABLE_RETRY_MAX : wait_ms * 2) {
		pthread_mutex_lock(&main_durable.mu);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += wait_ms / 1000;
		ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!main_durable.stop &&
		    pthread_cond_timedwait(&main_durable.cv, &main_durable.mu,
		    &ts) != ETIMEDOUT)
			;
		rc = main_durable.stop;
		pthread_mutex_unlock(&main_durable.mu);
		if (rc)
			break;
		if ((rc = main_durable_check(conninfo, err, sizeof(err))) < 0)
			continue;
		if (rc == 1)
			log_error("%s; this relay started before the database "
			    "was reachable and keeps running: restart it once "
			    "the setting is on", MAIN_DURABLE_WHY);
		break;
	}
	explicit_bzero(conninfo, strlen(conninfo));
	free(conninfo);
	return NULL;
}

/*
 * At startup: 0 to go on (durable, or unknown and being watched), -1 to
 * refuse (logged).
 */
static int
main_durable_start(void)
{
	pthread_condattr_t	 ca;
	char			 err[256];
	char			*copy;
	int			 rc;

	if ((rc = main_durable_check(rcfg_boot.db, err, sizeof(err))) == 1) {
		log_error("refusing to start: %s", MAIN_DURABLE_WHY);
		return -1;
	}
	if (rc == 0)
		return 0;
	log_warnx("database unreachable at startup (%s): synchronous_commit "
	    "will be checked once it answers", err);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_destroy(&main_durable.cv);
	pthread_cond_init(&main_durable.cv, &ca);
	pthread_condattr_destroy(&ca);
	if ((copy = strdup(rcfg_boot.db ? rcfg_boot.db : "")) == NULL ||
	    pthread_create(&main_durable.tid, NULL, main_durable_thread,
	    copy) != 0) {
		log_error("cannot start the synchronous_commit check");
		free(copy);
		return -1;
	}
	main_durable.started = 1;
	return 0;
}

/* Stop the late check; a connect in progress is not waited for long. */
static void
main_durable_stop(void)
{
	struct timespec	ts;

	if (!main_durable.started)
		return;
	pthread_mutex_lock(&main_durable.mu);
	main_durable.stop = 1;
	pthread_cond_signal(&main_durable.cv);
	pthread_mutex_unlock(&main_durable.mu);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += MAIN_DURABLE_JOIN_MS / 1000;
	if (pthread_timedjoin_np(main_durable.tid, NULL, &ts) != 0)
		pthread_detach(main_durable.tid);
	main_durable.started = 0;
}

/* Load, start the parts, serve until SIGTERM/SIGINT; exit 0, or 1 at startup. */
int
main(int argc, char **argv)
{
	sigset_t	set;
	int		sig = 0, rc;

	log_init(RELAY_PROGNAME, LOG_LEVEL_INFO);
	switch (rcfg_init(argc, argv)) {
	case 1:
		return 0;
	case -1:
		return 1;
	default:
		break;
	}

	/* Before any thread exists, so only sigwait below sees these. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = 1;
	if (main_durable_start() == -1)
		goto out;
	if (conn_init() == -1) {
		log_error("out of memory");
		goto out;
	}
	if (outq_start(rcfg_boot.writers) == -1 ||
	    dbpool_start(rcfg_boot.db, rcfg_boot.db_pool) == -1 ||
	    listen_start(rcfg_boot.db) == -1 ||
	    presence_start(rcfg_boot.db) == -1 ||
	    timer_start() == -1) {
		log_error("cannot start worker threads");
		goto stop;
	}
	if (server_start() == -1)
		goto stop;
	log_info("relay %s listening on %s (%d connections at most, %d db "
	    "workers, %d writers)", rcfg_boot.relay_id, rcfg_boot.listen,
	    rcfg_boot.max_connections, rcfg_boot.db_pool, rcfg_boot.writers);

	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			(void)rcfg_reload();
			continue;
		}
		break;
	}
	log_info("%s: closing connections", sig == SIGINT ? "SIGINT" : "SIGTERM");
	server_drain(MAIN_DRAIN_MS);
	rc = 0;
stop:
	server_stop();
	timer_stop();
	presence_stop();
	listen_stop();
	dbpool_stop();
	outq_stop();
	group_fini();
	deliver_fini();
	auth_fini();
	conn_fini();
out:
	main_durable_stop();
	rcfg_shutdown();
	if (rc == 0)
		log_info("stopped");
	return rc;
}
