/*
 * notify-lag.c: a LISTEN client for contrib/bench/store-notify-bench.
 *
 * Connects with a libpq conninfo, LISTENs on one channel and writes one
 * line per notification, "ID RECEIVED_US", to a file: the "id" field of the
 * JSON payload (parley_message carries {"id":N,...}) and the wall-clock
 * time (CLOCK_REALTIME, microseconds) at which libpq handed it over.  The
 * script joins these lines with parley.messages (created_at, and the commit
 * timestamp when track_commit_timestamp is on) to get the notification lag.
 * Like the relay's listener it calls PQnotifies before every poll.
 *
 * Usage: notify-lag CONNINFO CHANNEL OUTFILE SECONDS
 * Exits 0 after SECONDS (or on SIGTERM/SIGINT), 1 on a connection error.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static volatile sig_atomic_t	nl_stop;

static void
nl_on_signal(int sig)
{
	(void)sig;
	nl_stop = 1;
}

static long long
nl_now_us(int clock)
{
	struct timespec	ts;

	clock_gettime(clock, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The "id" number of a parley_message payload, or -1. */
static long long
nl_payload_id(const char *payload)
{
	const char	*p = strstr(payload, "\"id\":");

	return p == NULL ? -1 : strtoll(p + 5, NULL, 10);
}

int
main(int argc, char **argv)
{
	struct sigaction	 sa;
	struct pollfd		 pfd;
	PGconn			*pg = NULL;
	PGresult		*res;
	PGnotify		*n;
	FILE			*out = NULL;
	char			 sql[200];
	long long		 deadline, count = 0;
	int			 rc = 1;

	if (argc != 5) {
		fprintf(stderr, "usage: notify-lag CONNINFO CHANNEL OUTFILE SECONDS\n");
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = nl_on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	deadline = nl_now_us(CLOCK_MONOTONIC) + atoll(argv[4]) * 1000000LL;

	pg = PQconnectdb(argv[1]);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "notify-lag: %s", PQerrorMessage(pg));
		goto done;
	}
	snprintf(sql, sizeof(sql), "LISTEN %s", argv[2]);
	res = PQexec(pg, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "notify-lag: %s", PQerrorMessage(pg));
		PQclear(res);
		goto done;
	}
	PQclear(res);
	if ((out = fopen(argv[3], "w")) == NULL) {
		fprintf(stderr, "notify-lag: %s: %s\n", argv[3], strerror(errno));
		goto done;
	}
	/* Tell the script we listen (it waits for this line on stdout). */
	printf("listening\n");
	fflush(stdout);

	while (!nl_stop && nl_now_us(CLOCK_MONOTONIC) < deadline) {
		if (!PQconsumeInput(pg)) {
			fprintf(stderr, "notify-lag: %s", PQerrorMessage(pg));
			goto done;
		}
		while ((n = PQnotifies(pg)) != NULL) {
			fprintf(out, "%lld %lld\n", nl_payload_id(n->extra),
			    nl_now_us(CLOCK_REALTIME));
			count++;
			PQfreemem(n);
		}
		pfd.fd = PQsocket(pg);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, 100) < 0 && errno != EINTR) {
			perror("notify-lag: poll");
			goto done;
		}
	}
	fprintf(stderr, "notify-lag: %lld notifications\n", count);
	rc = 0;
done:
	if (out != NULL && fclose(out) != 0)
		rc = 1;
	PQfinish(pg);
	return rc;
}
