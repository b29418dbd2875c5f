/*
 * main.c: parley-relay's launcher.  Loads the configuration, starts the
 * parts in dependency order (writers, database pool, listener, timer, then
 * the server that lets clients in), and turns signals into actions on the
 * main thread: SIGHUP reloads keys and settings, SIGTERM/SIGINT close every
 * WebSocket with 1001 and exit 0 within 5 s.  Nothing else lives here.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

#define MAIN_DRAIN_MS	3000

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
	rcfg_shutdown();
	if (rc == 0)
		log_info("stopped");
	return rc;
}
