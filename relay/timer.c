/*
 * timer.c: everything that happens because time passed, on one thread
 * that visits every connection a few times a second.
 *
 *   not authenticated after PARLEY_AUTH_TIMEOUT      close 4002
 *   a WebSocket ping every WS_HEARTBEAT_INTERVAL     (queued, like any frame)
 *   nothing received for WS_CONNECTION_TIMEOUT       close 4000
 *   a minute before the token's exp                  token_expiring
 *   token expired and not refreshed                  close 4010
 *   session expired (session_check's expires_at)     close 4011
 *   our close frame unanswered for the grace period  shutdown(2) the socket,
 *                                                    which ends civetweb's
 *                                                    read loop
 *
 * Pings are spread: each connection pings on its own schedule from the
 * moment it opened.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "relay.h"

#define TIMER_TICK_MS		200
#define TIMER_EXPIRING_S	60
#define TIMER_EXPECT_MAX_MS	(10 * 60 * 1000)

static struct {
	pthread_t	 th;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	int		 stop;
	int		 started;
} tm = { .mu = PTHREAD_MUTEX_INITIALIZER };

struct timer_ctx {
	struct rcfg	*r;
	int64_t		 now;		/* monotonic ms */
	int64_t		 wall;		/* epoch s */
	struct frame	*ping;
	int		 expire;	/* sweep old expectations this tick */
};

static void
timer_visit(struct conn *c, void *arg)
{
	struct timer_ctx	*t = arg;
	int64_t			 rx;
	char			 buf[64];
	struct frame		*f;
	int			 n;

	rx = atomic_load_explicit(&c->last_rx_ms, memory_order_relaxed);
	pthread_mutex_lock(&c->mu);
	switch (c->state) {
	case CONN_NEW:
		if (t->now - c->opened_ms >= t->r->auth_timeout_ms)
			conn_close_locked(c, 4002, "authentication timeout");
		break;
	case CONN_OPEN:
		if (t->now - rx >= t->r->conn_timeout_ms) {
			conn_close_locked(c, 4000, "heartbeat timeout");
			break;
		}
		if (c->session_exp > 0 && t->wall >= c->session_exp) {
			conn_close_locked(c, 4011, "session expired");
			break;
		}
		if (c->token_exp > 0 && t->wall >= c->token_exp) {
			conn_close_locked(c, 4010, "token expired");
			break;
		}
		if (c->token_exp > 0 && !c->expiring_sent &&
		    c->token_exp - t->wall <= TIMER_EXPIRING_S) {
			c->expiring_sent = 1;
			n = snprintf(buf, sizeof(buf), "{\"type\":\"token_expiring\","
			    "\"expires_at\":%lld}", (long long)c->token_exp);
			if ((f = outq_frame(0x1, buf, (size_t)n)) != NULL) {
				outq_send_locked(c, f);
				outq_frame_unref(f);
			}
		}
		if (c->next_ping_ms == 0)
			c->next_ping_ms = c->opened_ms + t->r->heartbeat_ms;
		if (t->now >= c->next_ping_ms && t->ping != NULL) {
			outq_send_locked(c, t->ping);
			c->next_ping_ms = t->now + t->r->heartbeat_ms;
		}
		break;
	case CONN_CLOSING:
		if (t->now >= c->close_deadline_ms && !c->shut && c->fd >= 0) {
			/* The peer did not answer our close: end it. */
			if (shutdown(c->fd, SHUT_RDWR) == -1 && errno != ENOTCONN)
				clog_warnx(c, "shutdown: %s", strerror(errno));
			c->shut = 1;
		}
		break;
	case CONN_GONE:
		break;
	}
	pthread_mutex_unlock(&c->mu);
	if (t->expire)
		deliver_expire(c, t->now, TIMER_EXPECT_MAX_MS);
}

static void *
timer_main(void *arg)
{
	struct timer_ctx	t;
	struct timespec		ts;
	unsigned		tick = 0;

	(void)arg;
	pthread_mutex_lock(&tm.mu);
	while (!tm.stop) {
		pthread_mutex_unlock(&tm.mu);
		memset(&t, 0, sizeof(t));
		t.r = rcfg_get();
		t.now = util_mono_ms();
		t.wall = (int64_t)time(NULL);
		t.ping = outq_frame(0x9, NULL, 0);
		t.expire = tick++ % 50 == 0;
		conn_foreach(timer_visit, &t);
		outq_frame_unref(t.ping);
		rcfg_put(t.r);

		pthread_mutex_lock(&tm.mu);
		if (tm.stop)
			break;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += TIMER_TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&tm.cv, &tm.mu, &ts);
	}
	pthread_mutex_unlock(&tm.mu);
	return NULL;
}

/* Start the timer thread; see relay.h. */
int
timer_start(void)
{
	pthread_condattr_t	ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&tm.cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&tm.th, NULL, timer_main, NULL) != 0)
		return -1;
	tm.started = 1;
	return 0;
}

/* Stop and join; see relay.h. */
void
timer_stop(void)
{
	if (!tm.started)
		return;
	pthread_mutex_lock(&tm.mu);
	tm.stop = 1;
	pthread_cond_signal(&tm.cv);
	pthread_mutex_unlock(&tm.mu);
	pthread_join(tm.th, NULL);
	pthread_cond_destroy(&tm.cv);
	tm.started = 0;
}
