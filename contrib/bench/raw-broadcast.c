/*
 * raw-broadcast.c: the raw epoll broadcast server of BENCHMARKS.md, the
 * physical limit of the loopback path against which the relay and nchan are
 * compared.  It accepts WebSocket upgrades on /sub/<channel> and
 * /pub/<channel>; every data frame a publisher sends is written, unmasked and
 * unchanged, to every subscriber of that channel.  Nothing else: no auth, no
 * storage, no JSON, one thread.  Frames parsed from one read of a publisher
 * go out in one send() per subscriber (--no-coalesce: one send per frame).
 * A subscriber whose unsent backlog passes --max-backlog is closed.
 *
 * Loopback only; stops on SIGINT/SIGTERM or after --max-time and prints one
 * key=value line of counters (with its own CPU seconds) on stdout.
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

#define RB_HDR_MAX	8192
#define RB_READ		(256 * 1024)
#define RB_EVENTS	1024

enum rb_state { RB_HS, RB_SUB, RB_PUB, RB_DEAD };

struct rb_chan;

struct rb_conn {
	int		 fd;
	int		 state;
	int		 out_armed;
	struct rb_chan	*chan;
	size_t		 slot;		/* index in chan->subs */
	char		*rbuf;
	size_t		 rlen, rcap;
	char		*wbuf;
	size_t		 woff, wlen, wcap;
	struct rb_conn	*next_dead;
};

struct rb_chan {
	char		 name[72];
	struct rb_conn	**subs;
	size_t		 nsubs, cap;
	struct rb_chan	*next;
};

static struct {
	int			 ep;
	struct rb_chan		*chans;
	struct rb_conn		*dead;
	char			*scratch;
	char			*batch;
	size_t			 batchlen, batchcap;
	size_t			 max_backlog;
	int			 coalesce;
	/* Counters. */
	unsigned long long	 frames_in, deliveries, bytes_out, sends,
				 slow_closed, accepted, closed, subs_max,
				 subs_now;
} rb;

static volatile sig_atomic_t	rb_stop;

static void
rb_on_signal(int sig)
{
	(void)sig;
	rb_stop = 1;
}

static void
rb_arm(struct rb_conn *c, int out)
{
	struct epoll_event	ev;

	if (c->out_armed == out)
		return;
	ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
	ev.data.ptr = c;
	if (epoll_ctl(rb.ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->out_armed = out;
}

/* Close c now; free it after the current batch of events. */
static void
rb_close(struct rb_conn *c)
{
	struct rb_chan	*ch = c->chan;

	if (c->state == RB_DEAD)
		return;
	if (c->state == RB_SUB && ch != NULL) {
		ch->subs[c->slot] = ch->subs[--ch->nsubs];
		ch->subs[c->slot]->slot = c->slot;
		rb.subs_now--;
	}
	close(c->fd);
	c->fd = -1;
	c->state = RB_DEAD;
	rb.closed++;
	c->next_dead = rb.dead;
	rb.dead = c;
}

static int
rb_append(struct rb_conn *c, const char *p, size_t n)
{
	size_t	 cap;
	char	*nb;

	if (c->woff > 0 && c->woff == c->wlen)
		c->woff = c->wlen = 0;
	if (c->wlen - c->woff + n > rb.max_backlog)
		return -1;
	if (c->wcap - c->wlen < n && c->woff > 0) {
		memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
		c->wlen -= c->woff;
		c->woff = 0;
	}
	if (c->wcap - c->wlen < n) {
		cap = c->wcap ? c->wcap : 4096;
		while (cap - c->wlen < n)
			cap *= 2;
		if ((nb = realloc(c->wbuf, cap)) == NULL)
			return -1;
		c->wbuf = nb;
		c->wcap = cap;
	}
	memcpy(c->wbuf + c->wlen, p, n);
	c->wlen += n;
	return 0;
}

/* Send n bytes to c now if nothing is queued; queue the rest. */
static void
rb_send(struct rb_conn *c, const char *p, size_t n)
{
	ssize_t	r = 0;

	if (c->wlen == c->woff) {
		r = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		rb.sends++;
		if (r < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR) {
				rb_close(c);
				return;
			}
			r = 0;
		}
		rb.bytes_out += (unsigned long long)r;
		if ((size_t)r == n)
			return;
	}
	if (rb_append(c, p + r, n - (size_t)r) < 0) {
		rb.slow_closed++;
		rb_close(c);
		return;
	}
	rb_arm(c, 1);
}

static void
rb_flush(struct rb_conn *c)
{
	ssize_t	r;

	while (c->woff < c->wlen) {
		r = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		rb.sends++;
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			rb_close(c);
			return;
		}
		c->woff += (size_t)r;
		rb.bytes_out += (unsigned long long)r;
	}
	c->woff = c->wlen = 0;
	rb_arm(c, 0);
}

static struct rb_chan *
rb_chan_get(const char *name, size_t n)
{
	struct rb_chan	*ch;

	for (ch = rb.chans; ch != NULL; ch = ch->next)
		if (strlen(ch->name) == n && memcmp(ch->name, name, n) == 0)
			return ch;
	if ((ch = calloc(1, sizeof(*ch))) == NULL)
		return NULL;
	memcpy(ch->name, name, n);
	ch->next = rb.chans;
	rb.chans = ch;
	return ch;
}

/* Server frame header for a payload of n bytes; returns its length. */
static size_t
rb_frame_hdr(unsigned char *h, unsigned op, size_t n)
{
	int	i;

	h[0] = (unsigned char)(0x80 | op);
	if (n < 126) {
		h[1] = (unsigned char)n;
		return 2;
	}
	if (n < 65536) {
		h[1] = 126;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		return 4;
	}
	h[1] = 127;
	for (i = 0; i < 8; i++)
		h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
	return 10;
}

/* Write the batch to every subscriber of ch. */
static void
rb_broadcast(struct rb_chan *ch, unsigned long long frames)
{
	size_t	i;

	if (rb.batchlen == 0 || ch == NULL)
		return;
	/* rb_close swaps the last subscriber into a closed one's slot. */
	for (i = 0; i < ch->nsubs;) {
		struct rb_conn *s = ch->subs[i];

		rb_send(s, rb.batch, rb.batchlen);
		if (s->state != RB_DEAD)
			i++;
	}
	rb.deliveries += frames * ch->nsubs;
	rb.batchlen = 0;
}

static int
rb_batch_add(const unsigned char *h, size_t hl, const unsigned char *p,
    size_t n)
{
	size_t	 cap;
	char	*nb;

	if (rb.batchcap - rb.batchlen < hl + n) {
		cap = rb.batchcap ? rb.batchcap : 65536;
		while (cap - rb.batchlen < hl + n)
			cap *= 2;
		if ((nb = realloc(rb.batch, cap)) == NULL)
			return -1;
		rb.batch = nb;
		rb.batchcap = cap;
	}
	memcpy(rb.batch + rb.batchlen, h, hl);
	memcpy(rb.batch + rb.batchlen + hl, p, n);
	rb.batchlen += hl + n;
	return 0;
}

/*
 * Frames from a client (masked, RFC 6455 §5.3).  Returns bytes used, or -1
 * when c was closed.
 */
static ssize_t
rb_frames(struct rb_conn *c, unsigned char *u, size_t len)
{
	unsigned char		 h[14], *pl, *mk;
	unsigned		 op;
	uint64_t		 n;
	size_t			 off = 0, hl, i;
	unsigned long long	 frames = 0;

	while (len - off >= 2) {
		unsigned char *f = u + off;

		op = f[0] & 0x0f;
		n = f[1] & 0x7f;
		hl = 2;
		if (n == 126) {
			if (len - off < 4)
				break;
			n = (uint64_t)f[2] << 8 | f[3];
			hl = 4;
		} else if (n == 127) {
			if (len - off < 10)
				break;
			for (n = 0, i = 0; i < 8; i++)
				n = n << 8 | f[2 + i];
			hl = 10;
		}
		if (!(f[1] & 0x80) || n > LOAD_MAX_FRAME || !(f[0] & 0x80)) {
			/* Unmasked or fragmented client frames: not supported. */
			rb_close(c);
			return -1;
		}
		if (len - off < hl + 4 + n)
			break;
		mk = f + hl;
		pl = f + hl + 4;
		for (i = 0; i < n; i++)
			pl[i] ^= mk[i & 3];
		off += hl + 4 + n;
		if (op == 0x8) {
			size_t k = rb_frame_hdr(h, 0x8, n >= 2 ? 2 : 0);

			memcpy(h + k, pl, n >= 2 ? 2 : 0);
			(void)send(c->fd, h, k + (n >= 2 ? 2 : 0),
			    MSG_NOSIGNAL | MSG_DONTWAIT);
			rb_close(c);
			return -1;
		}
		if (op == 0x9 && n <= 125) {
			size_t k = rb_frame_hdr(h, 0xA, n);

			if (rb_append(c, (char *)h, k) == 0 &&
			    rb_append(c, (char *)pl, n) == 0)
				rb_flush(c);
			continue;
		}
		if (c->state != RB_PUB || (op != 0x1 && op != 0x2))
			continue;
		rb.frames_in++;
		frames++;
		hl = rb_frame_hdr(h, op, n);
		if (rb_batch_add(h, hl, pl, n) < 0) {
			rb_close(c);
			return -1;
		}
		if (!rb.coalesce) {
			rb_broadcast(c->chan, frames);
			frames = 0;
		}
	}
	rb_broadcast(c->chan, frames);
	return (ssize_t)off;
}

static void
rb_http_error(struct rb_conn *c, const char *status)
{
	char	buf[160];
	int	n;

	n = snprintf(buf, sizeof(buf), "HTTP/1.1 %s\r\nContent-Length: 0\r\n"
	    "Connection: close\r\n\r\n", status);
	(void)send(c->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	rb_close(c);
}

/* The upgrade request.  Returns bytes used, 0 when incomplete, -1 closed. */
static ssize_t
rb_handshake(struct rb_conn *c, char *buf, size_t len)
{
	const char	*e, *p, *eol, *key = NULL, *path, *sp;
	char		 acc[29], resp[256];
	size_t		 keylen = 0, plen;
	struct rb_chan	*ch;
	int		 n, pub;

	if ((e = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
		if (len > RB_HDR_MAX) {
			rb_http_error(c, "431 Request Header Fields Too Large");
			return -1;
		}
		return 0;
	}
	if (strncmp(buf, "GET ", 4) != 0 ||
	    (sp = memchr(buf + 4, ' ', (size_t)(e - buf - 4))) == NULL) {
		rb_http_error(c, "400 Bad Request");
		return -1;
	}
	path = buf + 4;
	plen = (size_t)(sp - path);
	for (p = (const char *)memchr(buf, '\n', (size_t)(e - buf)) + 1; p < e;
	    p = eol + 2) {
		eol = memmem(p, (size_t)(e + 2 - p), "\r\n", 2);
		if (eol - p > 18 && strncasecmp(p, "Sec-WebSocket-Key:", 18) == 0) {
			key = p + 18;
			while (*key == ' ')
				key++;
			keylen = (size_t)(eol - key);
			while (keylen > 0 && key[keylen - 1] == ' ')
				keylen--;
		}
	}
	pub = plen > 5 && memcmp(path, "/pub/", 5) == 0;
	if (key == NULL || (!pub && (plen <= 5 || memcmp(path, "/sub/", 5) != 0)) ||
	    plen - 5 > 64) {
		rb_http_error(c, key == NULL ? "400 Bad Request" : "404 Not Found");
		return -1;
	}
	if (load_ws_accept(key, keylen, acc) < 0 ||
	    (ch = rb_chan_get(path + 5, plen - 5)) == NULL) {
		rb_http_error(c, "500 Internal Server Error");
		return -1;
	}
	n = snprintf(resp, sizeof(resp), "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n\r\n", acc);
	if (rb_append(c, resp, (size_t)n) < 0) {
		rb_close(c);
		return -1;
	}
	c->chan = ch;
	if (pub) {
		c->state = RB_PUB;
	} else {
		if (ch->nsubs == ch->cap) {
			size_t		 cap = ch->cap ? ch->cap * 2 : 256;
			struct rb_conn	**ns = realloc(ch->subs, cap * sizeof(*ns));

			if (ns == NULL) {
				rb_close(c);
				return -1;
			}
			ch->subs = ns;
			ch->cap = cap;
		}
		c->slot = ch->nsubs;
		ch->subs[ch->nsubs++] = c;
		c->state = RB_SUB;
		if (++rb.subs_now > rb.subs_max)
			rb.subs_max = rb.subs_now;
	}
	rb_flush(c);
	return c->state == RB_DEAD ? -1 : (ssize_t)(e + 4 - buf);
}

static void
rb_read(struct rb_conn *c)
{
	char	*buf, *nb;
	size_t	 have, cap, used = 0;
	ssize_t	 r;

	if (c->rlen == 0) {
		buf = rb.scratch;
		have = 0;
		cap = RB_READ;
	} else {
		if (c->rcap - c->rlen < 65536) {
			if ((nb = realloc(c->rbuf, c->rcap * 2 + 65536)) == NULL) {
				rb_close(c);
				return;
			}
			c->rbuf = nb;
			c->rcap = c->rcap * 2 + 65536;
		}
		buf = c->rbuf;
		have = c->rlen;
		cap = c->rcap;
	}
	r = recv(c->fd, buf + have, cap - have, MSG_DONTWAIT);
	if (r <= 0) {
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR))
			return;
		rb_close(c);
		return;
	}
	have += (size_t)r;
	if (c->state == RB_HS) {
		if ((r = rb_handshake(c, buf, have)) < 0)
			return;
		if (r == 0)
			goto keep;	/* headers incomplete */
		used = (size_t)r;
	}
	if (used < have) {
		if ((r = rb_frames(c, (unsigned char *)buf + used, have - used)) < 0)
			return;
		used += (size_t)r;
	}
keep:
	if (used == have) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->rlen = c->rcap = 0;
		return;
	}
	if (buf == rb.scratch) {
		if ((nb = malloc(have - used + 65536)) == NULL) {
			rb_close(c);
			return;
		}
		free(c->rbuf);
		c->rbuf = nb;
		c->rcap = have - used + 65536;
		memcpy(c->rbuf, buf + used, have - used);
	} else {
		memmove(c->rbuf, c->rbuf + used, have - used);
	}
	c->rlen = have - used;
}

static void
rb_accept(int lfd)
{
	struct epoll_event	 ev;
	struct rb_conn		*c;
	int			 fd, one = 1, i;

	for (i = 0; i < 256; i++) {
		if ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK |
		    SOCK_CLOEXEC)) < 0)
			return;
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		c->state = RB_HS;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(rb.ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			free(c);
			continue;
		}
		rb.accepted++;
	}
}

static void
rb_usage(FILE *f)
{
	fprintf(f,
"usage: raw-broadcast --listen 127.0.0.1:PORT [options]\n"
"\n"
"The raw WebSocket broadcast ceiling for benchmarks: frames a publisher\n"
"sends on ws://HOST:PORT/pub/<channel> are written to every subscriber of\n"
"ws://HOST:PORT/sub/<channel>.  Loopback only.\n"
"\n"
"  --listen ADDR      loopback HOST:PORT (port 0: pick one, print it)\n"
"  --port-file FILE   write the port there once listening\n"
"  --max-time S       stop by itself after S seconds (default 3600)\n"
"  --max-backlog B    close a subscriber with more unsent bytes (16777216)\n"
"  --no-coalesce      one send() per frame instead of per publisher read\n"
"\n"
"Stops on SIGINT/SIGTERM; prints one key=value line of counters.\n");
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "max-time", required_argument, NULL, 't' },
		{ "max-backlog", required_argument, NULL, 'b' },
		{ "no-coalesce", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct sockaddr_storage	 ss;
	socklen_t		 sl;
	struct epoll_event	 evs[RB_EVENTS], ev;
	struct sigaction	 sa;
	struct rusage		 ru;
	struct rb_conn		*c, lc;
	const char		*listen_s = NULL, *port_file = NULL;
	char			 err[256], as[80];
	double			 max_time = 3600, v;
	int64_t			 deadline;
	int			 ch, lfd, one = 1, n, i;
	FILE			*f;

	rb.coalesce = 1;
	rb.max_backlog = 16u << 20;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l': listen_s = optarg; break;
		case 'p': port_file = optarg; break;
		case 't':
			if ((max_time = load_parse_seconds(optarg)) <= 0 ||
			    max_time > 86400) {
				fprintf(stderr, "raw-broadcast: bad --max-time\n");
				return 2;
			}
			break;
		case 'b':
			if ((v = load_parse_number(optarg)) < 1024) {
				fprintf(stderr, "raw-broadcast: bad --max-backlog\n");
				return 2;
			}
			rb.max_backlog = (size_t)v;
			break;
		case 'n': rb.coalesce = 0; break;
		case 'h': rb_usage(stdout); return 0;
		default: rb_usage(stderr); return 2;
		}
	}
	if (listen_s == NULL || optind != argc) {
		rb_usage(stderr);
		return 2;
	}
	if (load_parse_addr(listen_s, 0, &ss, &sl, err, sizeof(err)) < 0) {
		fprintf(stderr, "raw-broadcast: %s\n", err);
		return 2;
	}
	load_raise_nofile();
	if ((rb.scratch = malloc(RB_READ)) == NULL)
		return 1;
	if ((lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(lfd, (struct sockaddr *)&ss, sl) != 0 || listen(lfd, 4096) != 0) {
		fprintf(stderr, "raw-broadcast: listen %s: %s\n", listen_s,
		    strerror(errno));
		return 1;
	}
	sl = sizeof(ss);
	getsockname(lfd, (struct sockaddr *)&ss, &sl);
	load_addr_str(&ss, as, sizeof(as));
	if ((rb.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return 1;
	memset(&lc, 0, sizeof(lc));
	lc.fd = lfd;
	ev.events = EPOLLIN;
	ev.data.ptr = &lc;
	if (epoll_ctl(rb.ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
		return 1;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = rb_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (port_file != NULL) {
		char tmp[4096];

		snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
		if ((f = fopen(tmp, "w")) == NULL) {
			fprintf(stderr, "raw-broadcast: %s: %s\n", tmp,
			    strerror(errno));
			return 1;
		}
		fprintf(f, "%u\n", ntohs(ss.ss_family == AF_INET ?
		    ((struct sockaddr_in *)&ss)->sin_port :
		    ((struct sockaddr_in6 *)&ss)->sin6_port));
		if (fclose(f) != 0 || rename(tmp, port_file) != 0)
			return 1;
	}
	fprintf(stderr, "raw-broadcast: listening on %s\n", as);

	deadline = load_now_ns() + (int64_t)(max_time * 1e9);
	while (!rb_stop && load_now_ns() < deadline) {
		n = epoll_wait(rb.ep, evs, RB_EVENTS, 100);
		for (i = 0; i < n; i++) {
			c = evs[i].data.ptr;
			if (c == &lc) {
				rb_accept(lfd);
				continue;
			}
			if (c->state == RB_DEAD)
				continue;
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				rb_read(c);
			if (c->state != RB_DEAD && (evs[i].events & EPOLLOUT))
				rb_flush(c);
		}
		while ((c = rb.dead) != NULL) {
			rb.dead = c->next_dead;
			free(c->rbuf);
			free(c->wbuf);
			free(c);
		}
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("server=raw-broadcast listen=%s accepted=%llu closed=%llu "
	    "subs_max=%llu subs_end=%llu frames_in=%llu deliveries=%llu "
	    "bytes_out=%llu sends=%llu slow_closed=%llu coalesce=%d "
	    "cpu_s=%.3f\n", as, rb.accepted, rb.closed, rb.subs_max,
	    rb.subs_now, rb.frames_in, rb.deliveries, rb.bytes_out, rb.sends,
	    rb.slow_closed, rb.coalesce,
	    (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	fflush(stdout);
	return 0;
}
