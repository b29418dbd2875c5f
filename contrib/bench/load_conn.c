/*
 * load_conn.c: parley-load's client connections.  A non-blocking socket
 * (bound to one of the --src addresses), the RFC 6455 opening handshake with
 * the accept key checked and the token offered as a subprotocol (PROTOCOL.md
 * §2), masked client frames, server frames parsed in place (fragments
 * reassembled, pings answered, close answered), and the relay's messages
 * scanned for what the benchmark measures: welcome, message bodies (latency
 * from the scheduled send time they carry, duplicates and gaps per source),
 * acks and errors.  Raw mode (nchan, raw-broadcast) takes the body as the
 * whole message, and can publish by pipelined HTTP POST instead.
 *
 * Every received byte is parsed out of one per-worker scratch buffer; only a
 * partial frame is copied into the connection, so an idle connection holds
 * no buffers at all.  A connection struct lives until the end of the run, so
 * a stale epoll event can never touch freed memory.
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "load.h"

#define SCRATCH_LEN	(256 * 1024)
#define READ_CHUNK	(64 * 1024)
#define HQ_LEN		65536u		/* unanswered HTTP publishes */
#define HDR_MAX		16384		/* HTTP response header bytes */

enum why { F_CONNECT, F_HTTP, F_PROTO, F_CLOSED, F_TIMEOUT };

static int	load_conn_process(struct load_worker *, struct load_conn *,
		    char *, size_t, int64_t, size_t *);

/* Codes table; see load.h. */
void
load_codes_add(struct load_codes *t, const char *name, uint64_t n)
{
	int	i;

	for (i = 0; i < t->n; i++)
		if (strcmp(t->name[i], name) == 0) {
			t->count[i] += n;
			return;
		}
	if (t->n == LOAD_NCODES) {
		i = LOAD_NCODES - 1;
		snprintf(t->name[i], sizeof(t->name[i]), "other");
		t->count[i] += n;
		return;
	}
	snprintf(t->name[t->n], sizeof(t->name[0]), "%s", name);
	t->count[t->n++] = n;
}

/* Merge codes; see load.h. */
void
load_codes_merge(struct load_codes *dst, const struct load_codes *src)
{
	int	i;

	for (i = 0; i < src->n; i++)
		load_codes_add(dst, src->name[i], src->count[i]);
}

static void
load_conn_close(struct load_worker *w, struct load_conn *c)
{
	(void)w;
	if (c->fd >= 0)
		close(c->fd);	/* also leaves the epoll set */
	c->fd = -1;
	free(c->rbuf);
	free(c->mbuf);
	free(c->wbuf);
	c->rbuf = c->mbuf = c->wbuf = NULL;
	c->rlen = c->rcap = c->mlen = c->mcap = 0;
	c->woff = c->wlen = c->wcap = 0;
	c->out_armed = 0;
	c->state = ST_DEAD;
}

/*
 * The connection ended.  Before it opened, that is a failure to open, with
 * `why` as its reason; after, a dropped connection (while the run goes on).
 */
static void
load_conn_lost(struct load_worker *w, struct load_conn *c, enum why kind,
    const char *why)
{
	char	name[32];

	if (c->state == ST_DEAD)
		return;
	if (!c->counted) {
		c->counted = 1;
		w->pending--;
		w->st.failed++;
		snprintf(name, sizeof(name), "%s%s", kind == F_CONNECT ?
		    "connect_" : kind == F_HTTP ? "http_" : kind == F_PROTO ?
		    "proto_" : kind == F_CLOSED ? "close_" : "", why);
		load_codes_add(&w->st.fail_codes, name, 1);
	} else if (c->state == ST_READY &&
	    atomic_load_explicit(&w->ctl->phase, memory_order_relaxed) !=
	    PH_STOP) {
		w->st.dropped++;
		load_codes_add(&w->st.closes, why, 1);
	}
	load_conn_close(w, c);
}

static void
load_conn_opened(struct load_worker *w, struct load_conn *c, int64_t now)
{
	c->state = ST_READY;
	if (c->counted)
		return;
	c->counted = 1;
	w->pending--;
	w->st.opened++;
	w->st.ready_role[c->role]++;
	load_hist_add(&w->st.open, now - c->t_start);
}

static void
load_conn_arm(struct load_worker *w, struct load_conn *c, int out)
{
	struct epoll_event	ev;

	if (c->out_armed == out)
		return;
	ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
	ev.data.ptr = c;
	if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->out_armed = (uint8_t)out;
}

/* Room for n more bytes in c's send buffer. */
static int
load_conn_reserve(struct load_conn *c, size_t n)
{
	size_t	 cap;
	char	*nb;

	if (c->woff == c->wlen)
		c->woff = c->wlen = 0;
	if (c->wcap - c->wlen >= n)
		return 0;
	if (c->woff > 0) {
		memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
		c->wlen -= c->woff;
		c->woff = 0;
		if (c->wcap - c->wlen >= n)
			return 0;
	}
	cap = c->wcap ? c->wcap : 1024;
	while (cap - c->wlen < n)
		cap *= 2;
	if ((nb = realloc(c->wbuf, cap)) == NULL)
		return -1;
	c->wbuf = nb;
	c->wcap = cap;
	return 0;
}

static void
load_conn_dirty(struct load_worker *w, struct load_conn *c)
{
	if (!c->dirty) {
		c->dirty = 1;
		w->dirty[w->ndirty++] = c;
	}
}

/* Send what is queued; arm EPOLLOUT for the rest. */
static void
load_conn_flush(struct load_worker *w, struct load_conn *c)
{
	ssize_t	r;

	while (c->woff < c->wlen) {
		r = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r > 0) {
			c->woff += (size_t)r;
			w->st.tx_bytes += (uint64_t)r;
			w->st.writes++;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			load_conn_arm(w, c, 1);
			return;
		}
		load_conn_lost(w, c, F_CLOSED, "write-error");
		return;
	}
	c->woff = c->wlen = 0;
	if (c->wcap > 256 * 1024) {	/* a burst is over: give it back */
		free(c->wbuf);
		c->wbuf = NULL;
		c->wcap = 0;
	}
	load_conn_arm(w, c, 0);
}

/* Flush the dirty list; see load.h. */
void
load_conn_flush_dirty(struct load_worker *w)
{
	struct load_conn	*c;
	int			 i;

	for (i = 0; i < w->ndirty; i++) {
		c = w->dirty[i];
		c->dirty = 0;
		if (c->state != ST_DEAD && c->state != ST_CONNECTING)
			load_conn_flush(w, c);
	}
	w->ndirty = 0;
}

/* Queue one masked client frame (RFC 6455 §5.2, §5.3). */
static int
load_conn_frame(struct load_worker *w, struct load_conn *c, unsigned op,
    const void *payload, size_t n)
{
	const unsigned char	*p = payload;
	unsigned char		*d, mk[4];
	uint32_t		 m32;
	uint64_t		 m64, v;
	size_t			 h, i;

	if (load_conn_reserve(c, n + 14) < 0)
		return -1;
	d = (unsigned char *)c->wbuf + c->wlen;
	d[0] = (unsigned char)(0x80 | op);
	if (n < 126) {
		d[1] = (unsigned char)(0x80 | n);
		h = 2;
	} else if (n < 65536) {
		d[1] = 0x80 | 126;
		d[2] = (unsigned char)(n >> 8);
		d[3] = (unsigned char)n;
		h = 4;
	} else {
		d[1] = 0x80 | 127;
		for (i = 0; i < 8; i++)
			d[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
		h = 10;
	}
	m32 = load_rand32(&w->rng);
	memcpy(mk, &m32, 4);
	memcpy(d + h, mk, 4);
	h += 4;
	m64 = (uint64_t)m32 | (uint64_t)m32 << 32;
	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&v, p + i, 8);
		v ^= m64;
		memcpy(d + h + i, &v, 8);
	}
	for (; i < n; i++)
		d[h + i] = p[i] ^ mk[i & 3];
	c->wlen += h + n;
	load_conn_dirty(w, c);
	return 0;
}

/* Start a connection; see load.h. */
void
load_conn_start(struct load_worker *w, struct load_conn *c, int64_t now)
{
	const struct load_opts	*o = w->o;
	struct epoll_event	 ev;
	int			 one = 1, si;

	c->t_start = now;
	c->state = ST_CONNECTING;
	w->pending++;
	if ((c->fd = socket(o->dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) < 0)
		goto fail;
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o->pubsrclen > 0 && o->mode == MODE_FANOUT &&
	    c->idx < (uint32_t)o->pubs) {
		(void)setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
		if (bind(c->fd, (const struct sockaddr *)&o->pubsrc,
		    o->pubsrclen) != 0)
			goto fail;
	} else if (o->nsrc > 0) {
		si = (int)(c->idx % (uint32_t)o->nsrc);
		/* Pick the port at connect() time, per 4-tuple, not per address. */
		(void)setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
		if (bind(c->fd, (const struct sockaddr *)&o->src[si],
		    o->srclen[si]) != 0)
			goto fail;
	}
	if (connect(c->fd, (const struct sockaddr *)&o->dst, o->dstlen) != 0 &&
	    errno != EINPROGRESS)
		goto fail;
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
		goto fail;
	c->out_armed = 1;
	return;
fail:
	load_conn_lost(w, c, F_CONNECT, strerrorname_np(errno) ?
	    strerrorname_np(errno) : "error");
}

/* The TCP connection is up: send the upgrade request (or nothing: HTTP). */
static void
load_conn_connected(struct load_worker *w, struct load_conn *c, int64_t now)
{
	const struct load_opts	*o = w->o;
	unsigned char		 key[16];
	char			 k64[32];
	const char		*path;
	int			 err = 0, n;
	socklen_t		 el = sizeof(err);
	size_t			 need;
	uint32_t		 r;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
		err = errno;
	if (err != 0) {
		load_conn_lost(w, c, F_CONNECT, strerrorname_np(err) ?
		    strerrorname_np(err) : "error");
		return;
	}
	if (c->role == ROLE_HTTPPUB) {
		load_conn_opened(w, c, now);
		load_conn_arm(w, c, 0);
		return;
	}
	for (n = 0; n < 16; n += 4) {
		r = load_rand32(&w->rng);
		memcpy(key + n, &r, 4);
	}
	load_b64(key, sizeof(key), k64, sizeof(k64));
	if (load_ws_accept(k64, strlen(k64), c->accept) < 0) {
		load_conn_lost(w, c, F_PROTO, "accept-key");
		return;
	}
	path = !o->raw ? o->path : c->role == ROLE_PUB ? o->pub_path :
	    o->sub_path;
	need = strlen(path) + 512 + (c->cred >= 0 ?
	    strlen(o->creds[c->cred].token) : 0) +
	    (o->origin ? strlen(o->origin) : 0);
	if (load_conn_reserve(c, need) < 0) {
		load_conn_lost(w, c, F_CONNECT, "ENOMEM");
		return;
	}
	n = snprintf(c->wbuf + c->wlen, c->wcap - c->wlen,
	    "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\n%s%s%s%s%s%s\r\n",
	    path, o->hosthdr, k64,
	    c->cred >= 0 ? "Sec-WebSocket-Protocol: parley.v1, parley.token." : "",
	    c->cred >= 0 ? o->creds[c->cred].token : "",
	    c->cred >= 0 ? "\r\n" : "",
	    o->origin ? "Origin: " : "", o->origin ? o->origin : "",
	    o->origin ? "\r\n" : "");
	c->wlen += (size_t)n;
	c->state = ST_HANDSHAKE;
	load_conn_flush(w, c);
}

/* Header value of `name` in the header block [p, end), or NULL. */
static const char *
load_conn_header(const char *p, const char *end, const char *name,
    size_t *vlen)
{
	size_t		 nl = strlen(name);
	const char	*eol, *v;

	while (p < end) {
		if ((eol = memmem(p, (size_t)(end - p), "\r\n", 2)) == NULL)
			eol = end;
		if ((size_t)(eol - p) > nl && p[nl] == ':' &&
		    strncasecmp(p, name, nl) == 0) {
			v = p + nl + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*vlen = (size_t)(eol - v);
			while (*vlen > 0 && (v[*vlen - 1] == ' ' ||
			    v[*vlen - 1] == '\t'))
				(*vlen)--;
			return v;
		}
		p = eol + 2;
	}
	return NULL;
}

/*
 * The upgrade response.  Returns its length, 0 when incomplete, -1 when the
 * connection failed.
 */
static ssize_t
load_conn_handshake(struct load_worker *w, struct load_conn *c, char *buf,
    size_t len, int64_t now)
{
	const char	*e, *hdrs, *v;
	char		 st[8];
	size_t		 vl;
	int		 status;

	if ((e = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
		if (len > HDR_MAX) {
			load_conn_lost(w, c, F_PROTO, "header-too-large");
			return -1;
		}
		return 0;
	}
	if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ') {
		load_conn_lost(w, c, F_PROTO, "status-line");
		return -1;
	}
	status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	if (status != 101) {
		snprintf(st, sizeof(st), "%03d", status < 0 || status > 999 ? 0 :
		    status);
		load_conn_lost(w, c, F_HTTP, st);
		return -1;
	}
	hdrs = memchr(buf, '\n', len);
	hdrs = hdrs ? hdrs + 1 : e;
	if ((v = load_conn_header(hdrs, e + 2, "Sec-WebSocket-Accept", &vl)) ==
	    NULL || vl != 28 || memcmp(v, c->accept, 28) != 0) {
		load_conn_lost(w, c, F_PROTO, "bad-accept");
		return -1;
	}
	if (c->cred >= 0 && ((v = load_conn_header(hdrs, e + 2,
	    "Sec-WebSocket-Protocol", &vl)) == NULL || vl != 9 ||
	    memcmp(v, "parley.v1", 9) != 0)) {
		load_conn_lost(w, c, F_PROTO, "subprotocol");
		return -1;
	}
	if (w->o->raw)
		load_conn_opened(w, c, now);
	else
		c->state = ST_WELCOME;
	return (ssize_t)(e + 4 - buf);
}

/* Parse a fixed-width decimal field. */
static int
load_conn_digits(const char *p, int n, uint64_t *out)
{
	uint64_t	v = 0;
	int		i;

	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return 0;
}

/* 0: new in order, 1: duplicate, 2: new out of order, 3: too old to tell */
static int
load_conn_track(struct load_track *t, uint64_t s)
{
	uint64_t	k, sh, nw[4];
	int		i, q, r;

	if (s >= t->hi) {
		sh = s - t->hi + 1;
		if (sh >= 256) {
			memset(t->win, 0, sizeof(t->win));
		} else {
			q = (int)(sh / 64);
			r = (int)(sh % 64);
			for (i = 3; i >= 0; i--) {
				nw[i] = i - q >= 0 ? t->win[i - q] << r : 0;
				if (r != 0 && i - q - 1 >= 0)
					nw[i] |= t->win[i - q - 1] >> (64 - r);
			}
			memcpy(t->win, nw, sizeof(nw));
		}
		t->win[0] |= 1;
		t->hi = s + 1;
		return 0;
	}
	k = t->hi - 1 - s;
	if (k >= 256)
		return 3;
	if (t->win[k >> 6] >> (k & 63) & 1)
		return 1;
	t->win[k >> 6] |= 1ULL << (k & 63);
	return 2;
}

/*
 * A 64-byte body "t=<20 digits> p=<5 digits> s=<12 digits> ..." arrived:
 * latency from its scheduled time, and whether it is new.
 */
static void
load_conn_body(struct load_worker *w, struct load_conn *c, const char *p,
    size_t n, int64_t now)
{
	uint64_t	t, src, seq;
	int		slot, r;

	if (n != LOAD_BODY_LEN || p[0] != 't' || p[1] != '=' ||
	    memcmp(p + 22, " p=", 3) != 0 || memcmp(p + 30, " s=", 3) != 0 ||
	    load_conn_digits(p + 2, 20, &t) < 0 ||
	    load_conn_digits(p + 25, 5, &src) < 0 ||
	    load_conn_digits(p + 33, 12, &seq) < 0) {
		w->st.bad_body++;
		return;
	}
	slot = c->ntracks == 1 ? 0 : (int)src;
	if (src >= (uint64_t)w->o->nsources || slot >= c->ntracks) {
		w->st.bad_body++;
		return;
	}
	r = load_conn_track(&c->tracks[slot], seq);
	w->st.delivered_total++;
	if ((int64_t)t < w->t_meas0 || (int64_t)t >= w->t_meas1)
		return;
	if (r == 1) {
		w->st.dup++;
		return;
	}
	w->st.delivered++;
	c->got++;
	if (r == 2)
		w->st.ooo++;
	else if (r == 3)
		w->st.old++;
	load_hist_add(&w->st.lat, now - (int64_t)t);
}

/* An ack (or an HTTP publish answer) for a message scheduled at t. */
static void
load_conn_ack(struct load_worker *w, int64_t t, int64_t now)
{
	w->st.acks_total++;
	if (t < w->t_meas0 || t >= w->t_meas1)
		return;
	w->st.acks++;
	load_hist_add(&w->st.ack, now - t);
}

/* One complete text or binary message.  Returns -1 if c died. */
static int
load_conn_message(struct load_worker *w, struct load_conn *c, const char *p,
    size_t n, int64_t now)
{
	struct load_jmsg	m;
	char			code[32];
	uint64_t		t;

	if (w->o->raw) {
		if (c->role == ROLE_SUB || c->role == ROLE_IDLE)
			load_conn_body(w, c, p, n, now);
		else
			w->st.pub_rx++;
		return 0;
	}
	if (load_json_scan(p, n, &m) < 0 || m.type.p == NULL) {
		w->st.bad_msg++;
		return 0;
	}
	if (load_json_eq(&m.type, "group_message") ||
	    load_json_eq(&m.type, "private_message")) {
		if ((c->role == ROLE_SUB || c->role == ROLE_PRECV) &&
		    m.body.p != NULL)
			load_conn_body(w, c, m.body.p, m.body.n, now);
		else
			w->st.pub_rx++;
	} else if (load_json_eq(&m.type, "ack")) {
		/* client_id: "<nonce 8>-<scheduled ns, 20 digits>-<n>" */
		if (m.client_id.p != NULL && m.client_id.n > 30 &&
		    load_conn_digits(m.client_id.p + 9, 20, &t) == 0)
			load_conn_ack(w, (int64_t)t, now);
		else
			w->st.bad_msg++;
	} else if (load_json_eq(&m.type, "welcome")) {
		if (c->state == ST_WELCOME)
			load_conn_opened(w, c, now);
	} else if (load_json_eq(&m.type, "error")) {
		snprintf(code, sizeof(code), "%.*s", m.code.p ? (int)(m.code.n <
		    31 ? m.code.n : 31) : 7, m.code.p ? m.code.p : "unknown");
		load_codes_add(&w->st.errors, code, 1);
		if (c->state == ST_WELCOME) {
			load_conn_lost(w, c, F_PROTO, code);
			return -1;
		}
	} else {
		w->st.other_msgs++;
	}
	return 0;
}

/* Protocol error from the server: close 1002 and drop. */
static int
load_conn_proto(struct load_worker *w, struct load_conn *c, const char *why)
{
	unsigned char	cl[2] = { 1002 >> 8, 1002 & 0xff };

	if (load_conn_frame(w, c, 0x8, cl, 2) == 0)
		load_conn_flush(w, c);
	load_conn_lost(w, c, F_PROTO, why);
	return -1;
}

/*
 * One server frame at p (RFC 6455 §5.2).  Returns its length, 0 when it is
 * incomplete, -1 when the connection ended.
 */
static ssize_t
load_conn_wsframe(struct load_worker *w, struct load_conn *c, char *p,
    size_t len, int64_t now)
{
	unsigned char	*u = (unsigned char *)p, *pl, *mk = NULL;
	unsigned	 op, fin;
	uint64_t	 n;
	size_t		 h = 2, i;
	char		 why[24];
	unsigned	 code;
	char		*nb;

	if (len < 2)
		return 0;
	fin = u[0] & 0x80;
	op = u[0] & 0x0f;
	n = u[1] & 0x7f;
	if (u[0] & 0x70)
		return load_conn_proto(w, c, "rsv-bits");
	if (n == 126) {
		if (len < 4)
			return 0;
		n = (uint64_t)u[2] << 8 | u[3];
		h = 4;
	} else if (n == 127) {
		if (len < 10)
			return 0;
		for (n = 0, i = 0; i < 8; i++)
			n = n << 8 | u[2 + i];
		h = 10;
	}
	if (n > LOAD_MAX_FRAME)
		return load_conn_proto(w, c, "frame-too-large");
	if (u[1] & 0x80) {	/* servers must not mask; unmask anyway */
		if (len < h + 4)
			return 0;
		mk = u + h;
		h += 4;
	}
	if (len < h + n)
		return 0;
	pl = u + h;
	if (mk != NULL)
		for (i = 0; i < n; i++)
			pl[i] ^= mk[i & 3];
	if (op >= 0x8) {
		if (!fin || n > 125)
			return load_conn_proto(w, c, "bad-control");
		if (op == 0x8) {
			code = n >= 2 ? (unsigned)pl[0] << 8 | pl[1] : 1005;
			if (!c->close_sent) {
				c->close_sent = 1;
				if (load_conn_frame(w, c, 0x8, pl, n >= 2 ? 2 : 0)
				    == 0)
					load_conn_flush(w, c);
			}
			snprintf(why, sizeof(why), "%u", code);
			load_conn_lost(w, c, F_CLOSED, why);
			return -1;
		}
		if (op == 0x9) {
			w->st.pings++;
			if (load_conn_frame(w, c, 0xA, pl, n) < 0)
				return load_conn_proto(w, c, "ENOMEM");
		} else if (op != 0xA) {
			return load_conn_proto(w, c, "opcode");
		}
		return (ssize_t)(h + n);
	}
	if (op == 0x1 || op == 0x2) {
		if (c->in_frag)
			return load_conn_proto(w, c, "frame-order");
		if (fin) {
			if (load_conn_message(w, c, (char *)pl, n, now) < 0)
				return -1;
			return (ssize_t)(h + n);
		}
		c->in_frag = 1;
		c->mlen = 0;
	} else if (op != 0x0 || !c->in_frag) {
		return load_conn_proto(w, c, op == 0 ? "frame-order" : "opcode");
	}
	if (c->mlen + n > LOAD_MAX_FRAME)
		return load_conn_proto(w, c, "message-too-large");
	if (c->mlen + n > c->mcap) {
		if ((nb = realloc(c->mbuf, c->mlen + n + 1024)) == NULL)
			return load_conn_proto(w, c, "ENOMEM");
		c->mbuf = nb;
		c->mcap = c->mlen + n + 1024;
	}
	memcpy(c->mbuf + c->mlen, pl, n);
	c->mlen += n;
	if (fin) {
		c->in_frag = 0;
		if (load_conn_message(w, c, c->mbuf, c->mlen, now) < 0)
			return -1;
		free(c->mbuf);
		c->mbuf = NULL;
		c->mlen = c->mcap = 0;
	}
	return (ssize_t)(h + n);
}

/*
 * One HTTP response to a pipelined POST.  Returns its length, 0 when
 * incomplete, -1 when the connection failed.
 */
static ssize_t
load_conn_http(struct load_worker *w, struct load_conn *c, char *buf,
    size_t len, int64_t now)
{
	const char	*e, *v, *p, *end = buf + len;
	char		 st[16], *ep;
	size_t		 vl, hl;
	unsigned long	 cl, chunk;
	int		 status;

	if ((e = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
		if (len > HDR_MAX) {
			load_conn_lost(w, c, F_PROTO, "http-header");
			return -1;
		}
		return 0;
	}
	hl = (size_t)(e + 4 - buf);
	if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0) {
		load_conn_lost(w, c, F_PROTO, "http-status-line");
		return -1;
	}
	status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	if ((v = load_conn_header(buf, e + 2, "Content-Length", &vl)) != NULL) {
		cl = strtoul(v, &ep, 10);
		if (len < hl + cl)
			return 0;
		hl += cl;
	} else if ((v = load_conn_header(buf, e + 2, "Transfer-Encoding",
	    &vl)) != NULL && vl == 7 && strncasecmp(v, "chunked", 7) == 0) {
		for (p = buf + hl;;) {
			if ((e = memmem(p, (size_t)(end - p), "\r\n", 2)) == NULL)
				return 0;
			chunk = strtoul(p, &ep, 16);
			p = e + 2;
			if ((size_t)(end - p) < chunk + 2)
				return 0;
			p += chunk + 2;
			if (chunk == 0)
				break;
		}
		hl = (size_t)(p - buf);
	}
	if (c->hq_head != c->hq_tail) {
		if (status >= 200 && status < 300)
			load_conn_ack(w, c->hq[c->hq_head % HQ_LEN], now);
		c->hq_head++;
	}
	if (status < 200 || status >= 300) {
		snprintf(st, sizeof(st), "http:%03d", status < 0 || status > 999 ?
		    0 : status);
		load_codes_add(&w->st.errors, st, 1);
	}
	return (ssize_t)hl;
}

/*
 * Everything parsable in buf[0..len): the handshake, then frames (or HTTP
 * responses).  Sets *used.  Returns 0, or -1 when c ended.
 */
static int
load_conn_process(struct load_worker *w, struct load_conn *c, char *buf,
    size_t len, int64_t now, size_t *used)
{
	size_t	off = 0;
	ssize_t	r;

	*used = 0;
	if (c->state == ST_HANDSHAKE) {
		if ((r = load_conn_handshake(w, c, buf, len, now)) <= 0)
			return (int)r;
		off = (size_t)r;
	}
	while (off < len) {
		r = c->role == ROLE_HTTPPUB ?
		    load_conn_http(w, c, buf + off, len - off, now) :
		    load_conn_wsframe(w, c, buf + off, len - off, now);
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		off += (size_t)r;
	}
	*used = off;
	return 0;
}

/* Readable: one recv(), parse, keep the unparsed tail. */
static void
load_conn_read(struct load_worker *w, struct load_conn *c, int64_t now)
{
	char	*buf, *nb;
	size_t	 have, cap, used, rest, ncap;
	ssize_t	 r;

	if (c->rlen == 0) {
		buf = w->scratch;
		have = 0;
		cap = SCRATCH_LEN;
	} else {
		if (c->rcap - c->rlen < READ_CHUNK) {
			ncap = c->rcap * 2 > c->rlen + READ_CHUNK ? c->rcap * 2 :
			    c->rlen + READ_CHUNK;
			if ((nb = realloc(c->rbuf, ncap)) == NULL) {
				load_conn_lost(w, c, F_PROTO, "ENOMEM");
				return;
			}
			c->rbuf = nb;
			c->rcap = ncap;
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
		load_conn_lost(w, c, F_CLOSED, r == 0 ? "eof" : "reset");
		return;
	}
	w->st.reads++;
	w->st.rx_bytes += (uint64_t)r;
	have += (size_t)r;
	if (load_conn_process(w, c, buf, have, now, &used) < 0)
		return;
	rest = have - used;
	if (buf == w->scratch) {
		if (rest == 0)
			return;
		if (c->rcap < rest) {
			ncap = rest < READ_CHUNK ? READ_CHUNK : rest;
			if ((nb = realloc(c->rbuf, ncap)) == NULL) {
				load_conn_lost(w, c, F_PROTO, "ENOMEM");
				return;
			}
			c->rbuf = nb;
			c->rcap = ncap;
		}
		memcpy(c->rbuf, buf + used, rest);
	} else if (used > 0) {
		memmove(c->rbuf, c->rbuf + used, rest);
	}
	c->rlen = rest;
	if (rest == 0) {	/* idle connections hold no buffer */
		free(c->rbuf);
		c->rbuf = NULL;
		c->rcap = 0;
	}
}

/* epoll events; see load.h. */
void
load_conn_event(struct load_worker *w, struct load_conn *c, uint32_t ev,
    int64_t now)
{
	if (c->state == ST_DEAD)
		return;
	if (c->state == ST_CONNECTING) {
		if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			load_conn_connected(w, c, now);
		return;
	}
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
		load_conn_read(w, c, now);
	if (c->state != ST_DEAD && (ev & EPOLLOUT))
		load_conn_flush(w, c);
}

/* Open timeouts; see load.h. */
void
load_conn_timeouts(struct load_worker *w, int64_t now)
{
	int64_t			 limit = (int64_t)(w->o->open_timeout * 1e9);
	struct load_conn	*c;
	int			 i;

	for (i = w->scan_from; i < w->next_open; i++) {
		c = &w->conns[i];
		if (!c->counted && c->state != ST_DEAD &&
		    now - c->t_start > limit)
			load_conn_lost(w, c, F_TIMEOUT, "timeout");
	}
	while (w->scan_from < w->next_open && w->conns[w->scan_from].counted)
		w->scan_from++;
}

/* Publish message n; see load.h. */
int
load_conn_publish(struct load_worker *w, struct load_conn *c, uint64_t n,
    int64_t sched)
{
	const struct load_opts	*o = w->o;
	char			 body[LOAD_BODY_LEN + 1], msg[512];
	uint64_t		 src = n % (uint64_t)o->nsources;
	uint64_t		 seq = n / (uint64_t)o->nsources;
	int			 len;

	if (c->state != ST_READY || c->wlen - c->woff > o->wmax)
		return -1;
	/* Fixed layout, parsed back by load_conn_body. */
	len = snprintf(body, sizeof(body), "t=%020lld p=%05u s=%012llu ",
	    (long long)sched, (unsigned)src, (unsigned long long)seq);
	memset(body + len, '.', (size_t)(LOAD_BODY_LEN - len));
	body[LOAD_BODY_LEN] = '\0';

	if (c->role == ROLE_HTTPPUB) {
		if (c->hq_tail - c->hq_head >= HQ_LEN)
			return -1;
		len = snprintf(msg, sizeof(msg), "POST %s HTTP/1.1\r\nHost: %s\r\n"
		    "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
		    o->pub_path, o->hosthdr, LOAD_BODY_LEN, body);
		if (load_conn_reserve(c, (size_t)len) < 0)
			return -1;
		memcpy(c->wbuf + c->wlen, msg, (size_t)len);
		c->wlen += (size_t)len;
		c->hq[c->hq_tail++ % HQ_LEN] = sched;
		load_conn_dirty(w, c);
		return 0;
	}
	if (o->raw)
		return load_conn_frame(w, c, 0x1, body, LOAD_BODY_LEN);
	if (o->mode == MODE_PRIVATE)
		len = snprintf(msg, sizeof(msg), "{\"type\":\"private_message\","
		    "\"to\":%lld,\"body\":\"%s\",\"client_id\":\"%s-%020lld-%llu\"}",
		    (long long)c->peer_uid, body, o->nonce, (long long)sched,
		    (unsigned long long)n);
	else
		len = snprintf(msg, sizeof(msg), "{\"type\":\"group_message\","
		    "\"group\":%lld,\"body\":\"%s\",\"client_id\":\"%s-%020lld-%llu\"}",
		    (long long)o->group, body, o->nonce, (long long)sched,
		    (unsigned long long)n);
	return load_conn_frame(w, c, 0x1, msg, (size_t)len);
}

/* Close all; see load.h. */
void
load_conn_close_all(struct load_worker *w)
{
	static const unsigned char	 bye[2] = { 1000 >> 8, 1000 & 0xff };
	struct load_conn		*c;
	int				 i;

	for (i = 0; i < w->nconns; i++) {
		c = &w->conns[i];
		if (c->state == ST_DEAD || c->fd < 0)
			continue;
		if (c->state == ST_READY && c->role != ROLE_HTTPPUB &&
		    !c->close_sent) {
			c->close_sent = 1;
			c->woff = c->wlen = 0;	/* drop any backlog */
			if (load_conn_frame(w, c, 0x8, bye, 2) == 0)
				(void)send(c->fd, c->wbuf, c->wlen,
				    MSG_NOSIGNAL | MSG_DONTWAIT);
		}
		load_conn_close(w, c);
	}
	w->ndirty = 0;
}

/* Worker set-up; see load.h. */
int
load_conn_worker_init(struct load_worker *w, const struct load_opts *o,
    struct load_ctl *ctl, int idx, char *err, size_t errlen)
{
	struct load_conn	*c;
	uint32_t		 gi;
	int			 i, ntr;

	memset(w, 0, sizeof(*w));
	w->idx = idx;
	w->o = o;
	w->ctl = ctl;
	w->ep = -1;
	load_hist_init(&w->st.lat);
	load_hist_init(&w->st.ack);
	load_hist_init(&w->st.open);
	load_hist_init(&w->st.lag);
	if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng) ||
	    w->rng == 0)
		w->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)idx;
	w->nconns = (o->total - idx + o->threads - 1) / o->threads;
	if ((w->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (w->scratch = malloc(SCRATCH_LEN)) == NULL ||
	    (w->conns = calloc((size_t)w->nconns + 1, sizeof(*w->conns))) ==
	    NULL ||
	    (w->dirty = calloc((size_t)w->nconns + 1, sizeof(*w->dirty))) ==
	    NULL) {
		snprintf(err, errlen, "worker %d: %s", idx, strerror(errno));
		return -1;
	}
	for (i = 0; i < w->nconns; i++) {
		c = &w->conns[i];
		gi = (uint32_t)(i * o->threads + idx);
		c->fd = -1;
		c->idx = gi;
		c->cred = o->ncreds > 0 ? (int)(gi % o->ncreds) : -1;
		ntr = 0;
		switch (o->mode) {
		case MODE_IDLE:
			c->role = ROLE_IDLE;
			break;
		case MODE_FANOUT:
		case MODE_RAW:
			if (gi < (uint32_t)o->pubs) {
				c->role = o->http_pub ? ROLE_HTTPPUB : ROLE_PUB;
				w->has_sources = 1;
			} else {
				c->role = ROLE_SUB;
				ntr = o->pubs;
			}
			break;
		case MODE_PRIVATE:
			if (gi % 2 == 0) {
				c->role = ROLE_PSEND;
				c->peer_uid = o->creds[(gi + 1) % o->ncreds].uid;
				w->has_sources = 1;
			} else {
				c->role = ROLE_PRECV;
				ntr = 1;
			}
			break;
		}
		if (c->role == ROLE_HTTPPUB && (c->hq = calloc(HQ_LEN,
		    sizeof(*c->hq))) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if (ntr > 0 && (c->tracks = calloc((size_t)ntr,
		    sizeof(*c->tracks))) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		c->ntracks = ntr;
	}
	w->max_pending = o->max_pending / o->threads;
	if (w->max_pending < 1)
		w->max_pending = 1;
	w->open_gap_ns = 1e9 * o->threads / o->connect_rate;
	atomic_init(&w->connect_done, 0);
	return 0;
}

/* Free a worker; see load.h. */
void
load_conn_worker_free(struct load_worker *w)
{
	int	i;

	if (w->conns != NULL) {
		for (i = 0; i < w->nconns; i++) {
			if (w->conns[i].fd >= 0)
				close(w->conns[i].fd);
			free(w->conns[i].rbuf);
			free(w->conns[i].mbuf);
			free(w->conns[i].wbuf);
			free(w->conns[i].tracks);
			free(w->conns[i].hq);
		}
	}
	free(w->conns);
	free(w->dirty);
	free(w->scratch);
	if (w->ep >= 0)
		close(w->ep);
	w->conns = NULL;
	w->dirty = NULL;
	w->scratch = NULL;
	w->ep = -1;
}
