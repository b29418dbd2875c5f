/*
 * outq.c: bounded per-connection outbound queues and the writer threads
 * that drain them.
 *
 * Nothing but a writer ever writes to a WebSocket after the upgrade:
 * senders, the listener and the DB workers only queue frames, so a peer
 * that does not read can never block them (civetweb's mg_websocket_write
 * would, for up to request_timeout_ms, holding the connection's lock).
 * A writer owns an epoll set with the sockets of its connections and
 * sends with non-blocking sendmsg, several queued frames per call; a full
 * socket waits for EPOLLOUT (edge-triggered) while the writer serves
 * others.  A queue whose live part would grow past PARLEY_SEND_QUEUE
 * closes its connection with 4030 (PROTOCOL §2) instead of losing frames.
 *
 * Bulk output the relay produces itself (replies to sync, history and the
 * lists, deferred catch-up deliveries) is counted apart and never causes a
 * 4030: its producers stop filling at half of PARLEY_SEND_QUEUE (the high
 * mark) and park their job here; the writer resubmits parked jobs once the
 * bulk bytes have drained to a quarter (the low mark).  So a client that
 * reads is never closed for what the relay chose to send it in one go,
 * and one that does not read holds at most about the high mark of it.
 *
 * Frames are encoded once and reference-counted, so a group message is one
 * allocation whatever the number of recipients.
 *
 * Lifetime: the epoll registration holds a reference to the connection.
 * outq_detach (the close handler) removes the fd from epoll while it is
 * still open and hands the reference back to the writer, which drops it at
 * the top of its next loop, after the batch of events that might still
 * name the connection.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "relay.h"

#define OUTQ_IOV	64		/* frames per sendmsg */
#define OUTQ_BUDGET	(256 * 1024)	/* bytes per connection per turn */
#define OUTQ_FLUSH_MS	1000		/* close handler waits for close frame */

struct outq_list {
	struct conn	**v;
	size_t		 n, cap;
};

struct writer {
	pthread_t		 th;
	int			 ep, evfd;
	pthread_mutex_t		 mu;
	struct outq_list	 ready;		/* refs held */
	struct outq_list	 detached;	/* epoll refs to drop */
	int			 sleeping;
	int			 stop;
	int			 started;
};

static struct writer	*outq_writers;
static int		 outq_nwriters;
static atomic_uint	 outq_rr;

/* Encode one unmasked frame (RFC 6455 §5.2); see relay.h. */
struct frame *
outq_frame(int opcode, const void *payload, size_t len)
{
	struct frame	*f;
	size_t		 hl = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
	unsigned char	*h;
	int		 i;

	if (len > UINT32_MAX - 16)
		return NULL;
	if ((f = malloc(sizeof(*f) + hl + len)) == NULL)
		return NULL;
	atomic_init(&f->refs, 1);
	f->opcode = (uint8_t)opcode;
	f->bulk = 0;
	f->len = (uint32_t)(hl + len);
	h = f->data;
	h[0] = (unsigned char)(0x80 | (opcode & 0x0f));
	if (len < 126) {
		h[1] = (unsigned char)len;
	} else if (len <= 0xffff) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
	} else {
		h[1] = 127;
		for (i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
	}
	if (len > 0)
		memcpy(h + hl, payload, len);
	return f;
}

/* Take a reference to a frame. */
void
outq_frame_ref(struct frame *f)
{
	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

/* Drop a reference; the last frees the frame.  NULL is ignored. */
void
outq_frame_unref(struct frame *f)
{
	if (f != NULL &&
	    atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
		free(f);
}

static int
outq_list_push(struct outq_list *l, struct conn *c)
{
	if (l->n == l->cap) {
		size_t		 cap = l->cap ? l->cap * 2 : 64;
		struct conn	**v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = c;
	return 0;
}

/* Ring push; grows by doubling.  0 or -1. */
static int
outq_ring_push(struct outq *q, struct frame *f)
{
	if (q->count == q->cap) {
		uint32_t	 cap = q->cap ? q->cap * 2 : 8, i;
		struct frame	**r = malloc(cap * sizeof(*r));

		if (r == NULL)
			return -1;
		for (i = 0; i < q->count; i++)
			r[i] = q->ring[(q->head + i) % q->cap];
		free(q->ring);
		q->ring = r;
		q->cap = cap;
		q->head = 0;
	}
	q->ring[(q->head + q->count) % q->cap] = f;
	q->count++;
	q->bytes += f->len;
	if (f->bulk)
		q->bulk += f->len;
	return 0;
}

static struct frame *
outq_ring_at(const struct outq *q, uint32_t i)
{
	return q->ring[(q->head + i) % q->cap];
}

static void
outq_ring_pop(struct outq *q)
{
	struct frame	*f = q->ring[q->head];

	q->bytes -= f->len - q->off;
	if (f->bulk)
		q->bulk -= f->len - q->off;
	q->off = 0;
	q->head = (q->head + 1) % q->cap;
	q->count--;
	outq_frame_unref(f);
}

/* Release the queue memory; see relay.h. */
void
outq_free(struct outq *q)
{
	q->off = 0;
	while (q->count > 0)
		outq_ring_pop(q);
	free(q->ring);
	memset(q, 0, sizeof(*q));
}

/* Wake a writer if it sleeps; w->mu held. */
static void
outq_wake_locked(struct writer *w)
{
	uint64_t	one = 1;

	if (w->sleeping) {
		w->sleeping = 0;
		if (write(w->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_warn("writer: eventfd");
	}
}

/* Put c on its writer's ready list unless it is there or blocked. */
static void
outq_kick_locked(struct conn *c)
{
	struct writer	*w = c->w;

	if (c->in_ready || c->wblocked || w == NULL || c->fd < 0 ||
	    c->q.count == 0)
		return;
	pthread_mutex_lock(&w->mu);
	if (!w->stop && outq_list_push(&w->ready, c) == 0) {
		conn_ref(c);
		c->in_ready = 1;
		outq_wake_locked(w);
	}
	pthread_mutex_unlock(&w->mu);
}

/* Queue a frame; conn->mu held; see relay.h. */
int
outq_send_locked(struct conn *c, struct frame *f)
{
	if (c->state >= CONN_CLOSING || c->werr)
		return -1;
	/* PROTOCOL §2: only live traffic counts toward the bound. */
	if (!f->bulk &&
	    c->q.bytes - c->q.bulk + f->len > (size_t)c->send_limit) {
		conn_close_locked(c, 4030, "slow consumer");
		return -1;
	}
	if (outq_ring_push(&c->q, f) == -1) {
		conn_close_locked(c, 1011, "out of memory");
		return -1;
	}
	outq_frame_ref(f);
	outq_kick_locked(c);
	return 0;
}

/* Queue a frame; see relay.h. */
int
outq_send(struct conn *c, struct frame *f)
{
	int	rc;

	pthread_mutex_lock(&c->mu);
	rc = outq_send_locked(c, f);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* Bytes queued; see relay.h. */
size_t
outq_queued(struct conn *c)
{
	size_t	n;

	pthread_mutex_lock(&c->mu);
	n = c->q.bytes;
	pthread_mutex_unlock(&c->mu);
	return n;
}

/* At or above the bulk high mark?  See relay.h. */
int
outq_bulk_full_locked(const struct conn *c)
{
	return c->q.bulk >= (size_t)c->send_limit / 2;
}

/* Park a job until bulk output drains; conn->mu held; see relay.h. */
int
outq_park_locked(struct conn *c, struct job *job)
{
	if (c->state >= CONN_CLOSING || c->werr || c->fd < 0)
		return -1;
	if (!outq_bulk_full_locked(c))
		return 0;
	job->next = c->parked;
	c->parked = job;
	metrics_inc(M_PARKED);
	return 1;
}

/* Park a job; see relay.h. */
int
outq_park(struct conn *c, struct job *job)
{
	int	rc;

	pthread_mutex_lock(&c->mu);
	rc = outq_park_locked(c, job);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/*
 * Parked jobs to resubmit: all of them once bulk output has drained to the
 * low mark, or the connection cannot take more (closing, failed).  conn->mu
 * held; the caller submits them without it (a drop replies on c).
 */
static struct job *
outq_unpark_locked(struct conn *c)
{
	struct job	*list = c->parked;

	if (list == NULL)
		return NULL;
	if (c->q.bulk > (size_t)c->send_limit / 4 && c->state < CONN_CLOSING &&
	    !c->werr)
		return NULL;
	c->parked = NULL;
	return list;
}

static void
outq_resubmit(struct job *list)
{
	struct job	*next;

	for (; list != NULL; list = next) {
		next = list->next;
		dbpool_submit(list);
	}
}

/* Drop what is queued except a partly sent frame; see relay.h. */
void
outq_drop_locked(struct conn *c)
{
	struct outq	*q = &c->q;
	uint32_t	 keep = q->count > 0 && q->off > 0 ? 1 : 0;

	/* From the tail, so a partly sent head keeps its offset: a frame
	 * cut in the middle would corrupt the stream (RFC 6455 §5.2). */
	while (q->count > keep) {
		struct frame *f = q->ring[(q->head + q->count - 1) % q->cap];

		q->bytes -= f->len;
		if (f->bulk)
			q->bulk -= f->len;
		q->count--;
		outq_frame_unref(f);
	}
}

/* Queue a close frame (RFC 6455 §5.5.1); see relay.h. */
void
outq_close_locked(struct conn *c, int code, const char *reason)
{
	unsigned char	 p[125];
	size_t		 n = 0, rl;
	struct frame	*f;

	if (c->close_queued)
		return;
	if (code > 0) {
		p[0] = (unsigned char)(code >> 8);
		p[1] = (unsigned char)code;
		n = 2;
		rl = reason ? strlen(reason) : 0;
		if (rl > sizeof(p) - 2)
			rl = sizeof(p) - 2;
		memcpy(p + 2, reason, rl);
		n += rl;
	}
	if ((f = outq_frame(0x8, p, n)) == NULL)
		return;
	if (outq_ring_push(&c->q, f) == -1) {
		outq_frame_unref(f);
		return;
	}
	c->close_queued = 1;
	outq_kick_locked(c);
}

/*
 * Send as much as the socket takes, up to the budget; conn->mu held.
 * Returns 1 if more is queued and the socket is not full (requeue).
 */
static int
outq_write_locked(struct conn *c)
{
	struct iovec	 iov[OUTQ_IOV];
	struct msghdr	 msg;
	struct outq	*q = &c->q;
	size_t		 budget = OUTQ_BUDGET, want;
	ssize_t		 n;
	uint32_t	 cnt;

	while (q->count > 0 && !c->werr && c->fd >= 0) {
		want = 0;
		for (cnt = 0; cnt < q->count && cnt < OUTQ_IOV &&
		    want < budget; cnt++) {
			struct frame *f = outq_ring_at(q, cnt);
			size_t off = cnt == 0 ? q->off : 0;

			iov[cnt].iov_base = f->data + off;
			iov[cnt].iov_len = f->len - off;
			want += f->len - off;
		}
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = cnt;
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->wblocked = 1;
				return 0;
			}
			/* The peer is gone; its reader will notice too. */
			clog_debug(c, "send: %s", strerror(errno));
			c->werr = 1;
			q->off = 0;
			while (q->count > 0)
				outq_ring_pop(q);
			break;
		}
		metrics_add(M_BYTES_OUT, n);
		budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
		while (n > 0) {
			struct frame *f = q->ring[q->head];
			size_t left = f->len - q->off;

			if ((size_t)n < left) {
				q->off += (size_t)n;
				q->bytes -= (size_t)n;
				if (f->bulk)
					q->bulk -= (size_t)n;
				n = 0;
				break;
			}
			n -= (ssize_t)left;
			if (f->opcode == 0x8)
				c->close_sent = 1;
			metrics_inc(M_FRAMES_OUT);
			outq_ring_pop(q);
		}
		if (budget == 0 && q->count > 0)
			return 1;
	}
	if (c->flushing)
		pthread_cond_broadcast(&c->cv);
	return 0;
}

static void
outq_service(struct writer *w, struct conn *c, int from_epoll)
{
	struct job	*resume;
	int		 again;

	pthread_mutex_lock(&c->mu);
	if (from_epoll)
		c->wblocked = 0;
	else
		c->in_ready = 0;
	if (c->state == CONN_GONE || c->fd < 0 || c->in_ready) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	again = outq_write_locked(c);
	if (again && !c->in_ready) {
		pthread_mutex_lock(&w->mu);
		if (!w->stop && outq_list_push(&w->ready, c) == 0) {
			conn_ref(c);
			c->in_ready = 1;
		}
		pthread_mutex_unlock(&w->mu);
	}
	resume = outq_unpark_locked(c);
	pthread_mutex_unlock(&c->mu);
	outq_resubmit(resume);
}

static void *
outq_writer_main(void *arg)
{
	struct writer		*w = arg;
	struct epoll_event	 ev[64];
	struct outq_list	 ready = { NULL, 0, 0 }, det = { NULL, 0, 0 };
	struct outq_list	 tmp;
	uint64_t		 junk;
	size_t			 i;
	int			 n, idle, stop;

	for (;;) {
		pthread_mutex_lock(&w->mu);
		tmp = w->ready;
		w->ready = ready;
		ready = tmp;
		w->ready.n = 0;
		tmp = w->detached;
		w->detached = det;
		det = tmp;
		w->detached.n = 0;
		stop = w->stop;
		idle = ready.n == 0 && det.n == 0;
		if (idle && !stop)
			w->sleeping = 1;
		pthread_mutex_unlock(&w->mu);

		/* Events naming these were all handled in earlier turns. */
		for (i = 0; i < det.n; i++)
			conn_unref(det.v[i]);
		det.n = 0;
		if (stop) {
			for (i = 0; i < ready.n; i++) {
				pthread_mutex_lock(&ready.v[i]->mu);
				ready.v[i]->in_ready = 0;
				pthread_mutex_unlock(&ready.v[i]->mu);
				conn_unref(ready.v[i]);
			}
			ready.n = 0;
			break;
		}
		for (i = 0; i < ready.n; i++) {
			outq_service(w, ready.v[i], 0);
			conn_unref(ready.v[i]);
		}
		ready.n = 0;

		n = epoll_wait(w->ep, ev, 64, idle ? -1 : 0);
		pthread_mutex_lock(&w->mu);
		w->sleeping = 0;
		pthread_mutex_unlock(&w->mu);
		if (n < 0) {
			if (errno != EINTR)
				log_warn("writer: epoll_wait");
			continue;
		}
		for (i = 0; i < (size_t)n; i++) {
			if (ev[i].data.ptr == NULL) {
				if (read(w->evfd, &junk, sizeof(junk)) < 0 &&
				    errno != EAGAIN)
					log_warn("writer: eventfd read");
				continue;
			}
			outq_service(w, ev[i].data.ptr, 1);
		}
	}
	free(ready.v);
	free(det.v);
	return NULL;
}

/* Start the writers; see relay.h. */
int
outq_start(int n)
{
	struct epoll_event	ev;
	int			i;

	if ((outq_writers = calloc((size_t)n, sizeof(*outq_writers))) == NULL)
		return -1;
	outq_nwriters = n;
	for (i = 0; i < n; i++) {
		outq_writers[i].ep = outq_writers[i].evfd = -1;
		pthread_mutex_init(&outq_writers[i].mu, NULL);
	}
	for (i = 0; i < n; i++) {
		struct writer *w = &outq_writers[i];

		w->ep = epoll_create1(EPOLL_CLOEXEC);
		w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->ep < 0 || w->evfd < 0) {
			log_warn("writer: epoll/eventfd");
			return -1;
		}
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		ev.data.ptr = NULL;
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->evfd, &ev) == -1) {
			log_warn("writer: epoll_ctl");
			return -1;
		}
		if (pthread_create(&w->th, NULL, outq_writer_main, w) != 0) {
			log_error("writer: cannot start thread");
			return -1;
		}
		w->started = 1;
	}
	return 0;
}

/* Stop and join the writers; see relay.h. */
void
outq_stop(void)
{
	uint64_t	one = 1;
	int		i;
	size_t		j;

	for (i = 0; i < outq_nwriters; i++) {
		struct writer *w = &outq_writers[i];

		if (!w->started)
			continue;
		pthread_mutex_lock(&w->mu);
		w->stop = 1;
		if (write(w->evfd, &one, sizeof(one)) < 0)
			log_warn("writer: eventfd");
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->th, NULL);
	}
	for (i = 0; i < outq_nwriters; i++) {
		struct writer *w = &outq_writers[i];

		for (j = 0; j < w->ready.n; j++)
			conn_unref(w->ready.v[j]);
		for (j = 0; j < w->detached.n; j++)
			conn_unref(w->detached.v[j]);
		free(w->ready.v);
		free(w->detached.v);
		if (w->ep >= 0)
			close(w->ep);
		if (w->evfd >= 0)
			close(w->evfd);
		pthread_mutex_destroy(&w->mu);
	}
	free(outq_writers);
	outq_writers = NULL;
	outq_nwriters = 0;
}

/* Give a connection to a writer; see relay.h. */
int
outq_attach(struct conn *c)
{
	struct epoll_event	 ev;
	struct writer		*w;

	w = &outq_writers[atomic_fetch_add(&outq_rr, 1) % (unsigned)outq_nwriters];
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLOUT | EPOLLET;
	ev.data.ptr = c;
	conn_ref(c);		/* the epoll registration's */
	pthread_mutex_lock(&c->mu);
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
		pthread_mutex_unlock(&c->mu);
		clog_warnx(c, "epoll_ctl add: %s", strerror(errno));
		conn_unref(c);
		return -1;
	}
	c->w = w;
	outq_kick_locked(c);
	pthread_mutex_unlock(&c->mu);
	return 0;
}

/* The close handler's part; see relay.h. */
void
outq_detach(struct conn *c)
{
	struct timespec	 ts;
	struct writer	*w;
	struct job	*parked;
	int64_t		 deadline;
	int		 fd;

	pthread_mutex_lock(&c->mu);
	if (c->close_queued && !c->close_sent && !c->werr && c->w != NULL &&
	    c->fd >= 0) {
		/* Let our close frame out before civetweb closes the socket. */
		c->flushing = 1;
		outq_kick_locked(c);
		deadline = util_mono_ms() + OUTQ_FLUSH_MS;
		while (!c->close_sent && !c->werr && util_mono_ms() < deadline) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += 50 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		}
		c->flushing = 0;
	}
	c->state = CONN_GONE;
	fd = c->fd;
	c->fd = -1;
	w = c->w;
	c->q.off = 0;
	while (c->q.count > 0)
		outq_ring_pop(&c->q);
	parked = c->parked;
	c->parked = NULL;
	pthread_mutex_unlock(&c->mu);

	/* Parked jobs end now: they run once more and find the socket gone. */
	outq_resubmit(parked);

	if (fd < 0)
		return;
	if (w != NULL) {
		if (epoll_ctl(w->ep, EPOLL_CTL_DEL, fd, NULL) == -1)
			clog_warnx(c, "epoll_ctl del: %s", strerror(errno));
		pthread_mutex_lock(&w->mu);
		if (outq_list_push(&w->detached, c) == -1) {
			/* Cannot hand it over: leak one reference, not memory safety. */
			log_error("writer: out of memory; leaking a connection");
		}
		outq_wake_locked(w);
		pthread_mutex_unlock(&w->mu);
	}
	conn_fd_release(fd);
}
