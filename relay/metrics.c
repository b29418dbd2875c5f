/*
 * metrics.c: counters, gauges and histograms, and their Prometheus text.
 *
 * Everything is a relaxed atomic so any thread can count without a lock;
 * /metrics reads a slightly torn but monotonic picture, which is what
 * Prometheus expects.  No labels carry client data: error and close codes
 * come from fixed tables (anything else counts as "other").
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

static _Atomic int64_t metrics_ctr[M__COUNT];
static _Atomic int64_t metrics_conns;

static const struct {
	const char	*name, *help;
} metrics_ctr_info[M__COUNT] = {
	[M_CONN_ACCEPTED] = { "parley_relay_connections_accepted_total",
	    "WebSocket upgrades accepted" },
	[M_CONN_REFUSED] = { "parley_relay_handshakes_refused_total",
	    "WebSocket handshakes refused before the upgrade" },
	[M_AUTH_OK] = { "parley_relay_auth_total",
	    "connections authenticated" },
	[M_MSG_IN] = { "parley_relay_messages_in_total",
	    "private and group messages received from clients" },
	[M_MSG_STORED] = { "parley_relay_messages_stored_total",
	    "messages committed (duplicates excluded)" },
	[M_MSG_OUT] = { "parley_relay_messages_out_total",
	    "message events queued to connections" },
	[M_ACKS] = { "parley_relay_acks_total", "acks sent" },
	[M_CMDS] = { "parley_relay_commands_total", "commands received" },
	[M_NOTIFY] = { "parley_relay_notifications_total",
	    "notifications received from PostgreSQL" },
	[M_FRAMES_OUT] = { "parley_relay_frames_out_total",
	    "WebSocket frames written" },
	[M_BYTES_OUT] = { "parley_relay_bytes_out_total",
	    "bytes written to WebSockets" },
	[M_DB_RECONNECTS] = { "parley_relay_listener_reconnects_total",
	    "LISTEN connection (re)connects" },
	[M_DEFERRED] = { "parley_relay_deferred_deliveries_total",
	    "conversations whose catch-up delivery to a connection was "
	    "deferred to its reading pace" },
	[M_PARKED] = { "parley_relay_bulk_waits_total",
	    "times bulk output (sync, history, lists, catch-up) waited for "
	    "a client to read" },
	[M_POST_BATCHES] = { "parley_relay_message_batches_total",
	    "transactions that stored two or more messages (group commit)" },
	[M_POST_BATCHED] = { "parley_relay_message_batched_total",
	    "messages stored in those transactions" },
	[M_POST_SPLITS] = { "parley_relay_message_batch_splits_total",
	    "batches that failed as a whole and were stored one by one" },
};

static const char *const metrics_err_codes[] = {
	"bad_request", "unknown_type", "forbidden", "not_found", "too_large",
	"rate_limited", "unavailable", "internal", "invalid_token", "other",
	NULL
};
#define METRICS_NERR	10
static _Atomic int64_t metrics_err[METRICS_NERR];

static const int metrics_close_codes[] = {
	1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 4000, 4001, 4002,
	4009, 4010, 4011, 4029, 4030, 0
};
#define METRICS_NCLOSE	17	/* the last slot is "other" */
static _Atomic int64_t metrics_closes[METRICS_NCLOSE];

/* Histograms: upper bounds in microseconds. */
static const int64_t metrics_db_bounds[] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
	500000, 1000000, 0
};
static const int64_t metrics_lag_bounds[] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 0
};
#define METRICS_NB	13

struct metrics_hist {
	_Atomic int64_t	 bucket[METRICS_NB + 1];	/* last: +Inf */
	_Atomic int64_t	 sum_us, count;
};
static struct metrics_hist metrics_db, metrics_lag;

/* Count one event (any thread, lock-free). */
void
metrics_inc(enum metrics_ctr c)
{
	atomic_fetch_add_explicit(&metrics_ctr[c], 1, memory_order_relaxed);
}

/* Count n events (any thread, lock-free). */
void
metrics_add(enum metrics_ctr c, int64_t n)
{
	atomic_fetch_add_explicit(&metrics_ctr[c], n, memory_order_relaxed);
}

/* Count an error reply by its PROTOCOL §2 code. */
void
metrics_error(const char *code)
{
	int	i;

	for (i = 0; metrics_err_codes[i] != NULL; i++)
		if (strcmp(metrics_err_codes[i], code) == 0)
			break;
	if (i >= METRICS_NERR)
		i = METRICS_NERR - 1;
	atomic_fetch_add_explicit(&metrics_err[i], 1, memory_order_relaxed);
}

/* Count a close by code. */
void
metrics_close(int code)
{
	int	i;

	for (i = 0; metrics_close_codes[i] != 0; i++)
		if (metrics_close_codes[i] == code)
			break;
	atomic_fetch_add_explicit(&metrics_closes[i], 1, memory_order_relaxed);
}

/* Move the authenticated-connections gauge by delta. */
void
metrics_conn_gauge(int delta)
{
	atomic_fetch_add_explicit(&metrics_conns, delta, memory_order_relaxed);
}

static void
metrics_observe(struct metrics_hist *h, const int64_t *bounds, int64_t us)
{
	int	i;

	if (us < 0)
		us = 0;
	for (i = 0; bounds[i] != 0 && us > bounds[i]; i++)
		;
	atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

/* Observe one statement's latency in microseconds. */
void
metrics_db_latency_us(int64_t us)
{
	metrics_observe(&metrics_db, metrics_db_bounds, us);
}

/* Observe commit-to-fan-out lag in milliseconds. */
void
metrics_notify_lag_ms(int64_t ms)
{
	metrics_observe(&metrics_lag, metrics_lag_bounds, ms * 1000);
}

static void
metrics_print_hist(FILE *fp, const char *name, const char *help,
    struct metrics_hist *h, const int64_t *bounds)
{
	int64_t	cum = 0;
	int	i;

	fprintf(fp, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (i = 0; bounds[i] != 0; i++) {
		cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
		fprintf(fp, "%s_bucket{le=\"%g\"} %lld\n", name,
		    (double)bounds[i] / 1e6, (long long)cum);
	}
	cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
	fprintf(fp, "%s_bucket{le=\"+Inf\"} %lld\n", name, (long long)cum);
	fprintf(fp, "%s_sum %.6f\n%s_count %lld\n", name,
	    (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6,
	    name, (long long)atomic_load_explicit(&h->count,
	    memory_order_relaxed));
}

/* The Prometheus text exposition (format 0.0.4); see relay.h. */
char *
metrics_render(size_t *len)
{
	FILE	*fp;
	char	*buf = NULL;
	size_t	 n = 0;
	int	 i;

	if ((fp = open_memstream(&buf, &n)) == NULL)
		return NULL;
	fprintf(fp, "# HELP parley_relay_connections open authenticated "
	    "WebSocket connections\n# TYPE parley_relay_connections gauge\n"
	    "parley_relay_connections %lld\n",
	    (long long)atomic_load_explicit(&metrics_conns,
	    memory_order_relaxed));
	fprintf(fp, "# HELP parley_relay_sockets WebSockets held (any state)\n"
	    "# TYPE parley_relay_sockets gauge\nparley_relay_sockets %zu\n",
	    conn_count());
	fprintf(fp, "# HELP parley_relay_db_up database connections (pool and "
	    "LISTEN) are up\n# TYPE parley_relay_db_up gauge\n"
	    "parley_relay_db_up %d\n", dbpool_healthy() && presence_healthy() &&
	    listen_up());
	fprintf(fp, "# HELP parley_relay_listener_up the LISTEN connection is "
	    "up\n# TYPE parley_relay_listener_up gauge\n"
	    "parley_relay_listener_up %d\n", listen_up());
	for (i = 0; i < M__COUNT; i++)
		fprintf(fp, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n",
		    metrics_ctr_info[i].name, metrics_ctr_info[i].help,
		    metrics_ctr_info[i].name, metrics_ctr_info[i].name,
		    (long long)atomic_load_explicit(&metrics_ctr[i],
		    memory_order_relaxed));
	fprintf(fp, "# HELP parley_relay_errors_total error replies by code\n"
	    "# TYPE parley_relay_errors_total counter\n");
	for (i = 0; i < METRICS_NERR; i++)
		fprintf(fp, "parley_relay_errors_total{code=\"%s\"} %lld\n",
		    metrics_err_codes[i],
		    (long long)atomic_load_explicit(&metrics_err[i],
		    memory_order_relaxed));
	fprintf(fp, "# HELP parley_relay_closes_total WebSocket closes by code\n"
	    "# TYPE parley_relay_closes_total counter\n");
	for (i = 0; i < METRICS_NCLOSE; i++) {
		if (metrics_close_codes[i] != 0)
			fprintf(fp, "parley_relay_closes_total{code=\"%d\"} %lld\n",
			    metrics_close_codes[i],
			    (long long)atomic_load_explicit(&metrics_closes[i],
			    memory_order_relaxed));
		else
			fprintf(fp, "parley_relay_closes_total{code=\"other\"} "
			    "%lld\n", (long long)atomic_load_explicit(
			    &metrics_closes[i], memory_order_relaxed));
	}
	metrics_print_hist(fp, "parley_relay_db_latency_seconds",
	    "database statement latency", &metrics_db, metrics_db_bounds);
	metrics_print_hist(fp, "parley_relay_notification_lag_seconds",
	    "commit to delivery (message created_at to fan-out)", &metrics_lag,
	    metrics_lag_bounds);
	if (fclose(fp) != 0) {
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}
