/*
 * load_run.c: one parley-load worker thread.  Its epoll loop opens its share
 * of the connections at the bounded connect rate (never more than its share
 * of --max-pending handshakes at once), fails those that take longer than
 * --open-timeout, then, once the main thread has set the start time,
 * publishes on an open-loop schedule: message n is due at t0 + n / rate and
 * belongs to source n mod sources, whatever happened to earlier messages, so
 * a slow server shows up as latency (measured from the scheduled time) and
 * never as a lower offered rate (no coordinated omission).  The worker wakes
 * for the next due message with a nanosecond epoll timeout.
 */
#include "config.h"

#include <sys/epoll.h>

#include <time.h>

#include "load.h"

#define MAX_EVENTS	1024
#define PUBLISH_BURST	4096		/* messages per pass before I/O */
#define TICK_NS		10000000	/* longest sleep: 10 ms */
#define LATE_NS		1000000		/* a send 1 ms behind schedule is late */

/* Scheduled time of message n; see load.h. */
int64_t
load_run_sched(const struct load_worker *w, uint64_t n)
{
	return w->t0 + (int64_t)((double)n * 1e9 / w->o->rate);
}

/* Open connections that are due and allowed; fail slow ones. */
static void
load_run_connect(struct load_worker *w, int64_t now)
{
	while (w->next_open < w->nconns && w->pending < w->max_pending &&
	    now >= w->next_open_at) {
		load_conn_start(w, &w->conns[w->next_open++], now);
		w->next_open_at += (int64_t)w->open_gap_ns;
	}
	/* Catch up at most 10 ms of opens after a stall, not a burst. */
	if (w->next_open_at < now - TICK_NS)
		w->next_open_at = now - TICK_NS;
	if (now - w->last_scan >= TICK_NS * 5) {
		w->last_scan = now;
		load_conn_timeouts(w, now);
	}
}

/* Send every message that is due; return the time the next one is due. */
static int64_t
load_run_publish(struct load_worker *w, int64_t now)
{
	const struct load_opts	*o = w->o;
	struct load_ctl		*ctl = w->ctl;
	struct load_conn	*c;

	uint64_t		 n, src, ci;
	int64_t			 t;
	int			 burst = 0, inwin;

	for (;;) {
		n = w->next_n;
		t = load_run_sched(w, n);
		if (t >= w->t_send_end)
			return INT64_MAX;
		if (t > now || burst++ >= PUBLISH_BURST)
			return t;
		w->next_n++;
		src = n % (uint64_t)o->nsources;
		ci = o->mode == MODE_PRIVATE ? src * 2 : src;
		if (ci % (uint64_t)o->threads != (uint64_t)w->idx)
			continue;
		c = &w->conns[ci / (uint64_t)o->threads];
		inwin = t >= w->t_meas0 && t < w->t_meas1;
		if (!ctl->src_ok[src] || load_conn_publish(w, c, n, t) < 0) {
			if (inwin)
				w->st.unsent++;
			continue;
		}
		w->st.sent_total++;
		if (inwin) {
			w->st.sent++;
			c->sent++;
			load_hist_add(&w->st.lag, now - t);
			if (now - t > LATE_NS)
				w->st.lag_late++;
		}
	}
}

/* Copy the run's times once main has published them (phase >= PH_RUN). */
static int
load_run_seen(struct load_worker *w)
{
	if (!w->run_seen && atomic_load_explicit(&w->ctl->phase,
	    memory_order_acquire) >= PH_RUN) {
		w->t0 = w->ctl->t0;
		w->t_meas0 = w->ctl->t_meas0;
		w->t_meas1 = w->ctl->t_meas1;
		w->t_send_end = w->ctl->t_send_end;
		w->run_seen = 1;
	}
	return w->run_seen;
}

/* The worker thread; see load.h. */
void *
load_run_thread(void *arg)
{
	struct load_worker	*w = arg;
	struct epoll_event	 ev[MAX_EVENTS];
	struct timespec		 ts;
	int64_t			 now, next, due = INT64_MAX;
	int			 i, n, ph;

	now = load_now_ns();
	w->next_open_at = now;
	w->last_scan = now;
	for (;;) {
		ph = atomic_load_explicit(&w->ctl->phase, memory_order_acquire);
		if (ph == PH_STOP)
			break;
		now = load_now_ns();
		next = now + TICK_NS;
		if (w->next_open < w->nconns || w->pending > 0) {
			load_run_connect(w, now);
			/* At the pending cap, wait for handshakes, not the clock. */
			if (w->next_open < w->nconns &&
			    w->pending < w->max_pending && w->next_open_at < next)
				next = w->next_open_at;
		} else if (!atomic_load_explicit(&w->connect_done,
		    memory_order_relaxed)) {
			/* Snapshot which connections opened, then tell main. */
			for (i = 0; i < w->nconns; i++)
				w->ctl->ready[w->conns[i].idx] =
				    w->conns[i].state == ST_READY;
			atomic_store_explicit(&w->connect_done, 1,
			    memory_order_release);
		}
		due = INT64_MAX;
		if (ph == PH_RUN && w->has_sources && load_run_seen(w)) {
			due = load_run_publish(w, now);
			load_conn_flush_dirty(w);
			if (due < next)
				next = due;
		}
		if (next < now)
			next = now;
		ts.tv_sec = (next - now) / 1000000000;
		ts.tv_nsec = (next - now) % 1000000000;
		n = epoll_pwait2(w->ep, ev, MAX_EVENTS, &ts, NULL);
		if (n <= 0)
			continue;
		(void)load_run_seen(w);	/* a message may precede our next pass */
		for (i = 0; i < n; i++) {
			/* A receive time per read (vDSO clock, ~50 ns): a batch
			 * of events can take milliseconds to work through. */
			now = load_now_ns();
			load_conn_event(w, ev[i].data.ptr, ev[i].events, now);
			/* Keep the send schedule while a large batch is read. */
			if ((i & 31) == 31 && due <= now && ph == PH_RUN &&
			    w->run_seen) {
				due = load_run_publish(w, now);
				load_conn_flush_dirty(w);
			}
		}
		load_conn_flush_dirty(w);
	}
	load_conn_close_all(w);
	return NULL;
}

/* Merge statistics; see load.h. */
void
load_run_merge(struct load_stats *d, const struct load_stats *s)
{
	int	i;

	d->opened += s->opened;
	d->failed += s->failed;
	for (i = 0; i < ROLE_N; i++)
		d->ready_role[i] += s->ready_role[i];
	d->dropped += s->dropped;
	d->sent += s->sent;
	d->sent_total += s->sent_total;
	d->unsent += s->unsent;
	d->lag_late += s->lag_late;
	d->delivered += s->delivered;
	d->delivered_total += s->delivered_total;
	d->dup += s->dup;
	d->ooo += s->ooo;
	d->old += s->old;
	d->bad_body += s->bad_body;
	d->bad_msg += s->bad_msg;
	d->pub_rx += s->pub_rx;
	d->other_msgs += s->other_msgs;
	d->acks += s->acks;
	d->acks_total += s->acks_total;
	d->pings += s->pings;
	d->rx_bytes += s->rx_bytes;
	d->tx_bytes += s->tx_bytes;
	d->reads += s->reads;
	d->writes += s->writes;
	load_codes_merge(&d->fail_codes, &s->fail_codes);
	load_codes_merge(&d->closes, &s->closes);
	load_codes_merge(&d->errors, &s->errors);
	load_hist_merge(&d->lat, &s->lat);
	load_hist_merge(&d->ack, &s->ack);
	load_hist_merge(&d->open, &s->open);
	load_hist_merge(&d->lag, &s->lag);
}
