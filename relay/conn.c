/*
 * conn.c: per-connection objects and the registry of live connections.
 *
 * civetweb reuses its struct mg_connection after a socket closes, so every
 * WebSocket gets a struct conn of our own: reference-counted (jobs, writer
 * queues and the epoll set hold references), with a process-unique 64-bit
 * id.  The registry lists live connections and indexes authenticated ones
 * by user id, which is what delivery, the per-user cap, instance
 * replacement and session revocation look up.
 *
 * civetweb does not expose a connection's socket, yet closing a stuck peer
 * and non-blocking writes need it: conn_find_fd finds it once, right after
 * the upgrade, by matching the address pair among the fds not already
 * owned by a connection (a set kept here).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"

#define CONN_BUCKETS	4096

static pthread_rwlock_t	 conn_reg = PTHREAD_RWLOCK_INITIALIZER;
static struct conn	*conn_all;
static size_t		 conn_n;
static struct conn	*conn_users[CONN_BUCKETS];
static _Atomic uint64_t	 conn_ids;

static pthread_mutex_t	 conn_fd_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t		*conn_fd_bits;
static int		 conn_fd_max;

static size_t
conn_bucket(int64_t uid)
{
	uint64_t h = (uint64_t)uid * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 52) % CONN_BUCKETS;
}

/* Set up the fd set; see relay.h. */
int
conn_init(void)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > (1u << 20))
		rl.rlim_cur = 1u << 20;
	conn_fd_max = (int)rl.rlim_cur;
	conn_fd_bits = calloc((size_t)conn_fd_max / 64 + 1, sizeof(uint64_t));
	return conn_fd_bits ? 0 : -1;
}

/* Release the fd set at exit. */
void
conn_fini(void)
{
	free(conn_fd_bits);
	conn_fd_bits = NULL;
}

/* A new process-unique connection id (never 0). */
uint64_t
conn_next_id(void)
{
	return atomic_fetch_add(&conn_ids, 1) + 1;
}

/* A new connection object; see relay.h. */
struct conn *
conn_new(const char *ip, int port)
{
	struct conn		*c;
	pthread_condattr_t	 ca;
	struct rcfg		*r;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	atomic_init(&c->refs, 1);
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	c->id = conn_next_id();
	util_strlcpy(c->ip, ip, sizeof(c->ip));
	c->port = port;
	c->fd = -1;
	c->opened_ms = util_mono_ms();
	atomic_init(&c->last_rx_ms, c->opened_ms);
	r = rcfg_get();
	c->send_limit = r->send_queue;
	c->bucket = 2 * r->rate;
	rcfg_put(r);
	c->bucket_ms = c->opened_ms;
	return c;
}

/* Take a reference; see relay.h. */
void
conn_ref(struct conn *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

/* Drop a reference; the last frees; see relay.h. */
void
conn_unref(struct conn *c)
{
	if (c == NULL ||
	    atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	outq_free(&c->q);
	free(c->frag);
	free(c->expect);
	free(c->bf);
	free(c->mk);
	if (c->hs != NULL) {
		explicit_bzero(c->hs, sizeof(*c->hs));
		free(c->hs);
	}
	explicit_bzero(c->sid, sizeof(c->sid));
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* Upper bound of open fd numbers: FDSize of /proc/self/status. */
static int
conn_fd_bound(void)
{
	FILE	*fp;
	char	 line[128];
	int	 n = conn_fd_max;

	if ((fp = fopen("/proc/self/status", "re")) == NULL)
		return n;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strncmp(line, "FDSize:", 7) == 0) {
			n = atoi(line + 7);
			break;
		}
	fclose(fp);
	if (n <= 0 || n > conn_fd_max)
		n = conn_fd_max;
	return n;
}

static int
conn_addr_match(const struct sockaddr_storage *ss, int family,
    const void *addr, int port)
{
	if (ss->ss_family != family)
		return 0;
	if (family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		return ntohs(s->sin_port) == port &&
		    memcmp(&s->sin_addr, addr, sizeof(s->sin_addr)) == 0;
	}
	if (family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;

		return ntohs(s->sin6_port) == port &&
		    memcmp(&s->sin6_addr, addr, sizeof(s->sin6_addr)) == 0;
	}
	return 0;
}

static int
conn_local_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
	return -1;
}

/* Find a civetweb socket by its address pair; see relay.h. */
int
conn_find_fd(const char *remote_ip, int remote_port, int local_port)
{
	struct pollfd		pfd[256];
	struct sockaddr_storage	ss;
	socklen_t		sl;
	unsigned char		addr[16];
	int			family, bound, base, fd, nf, i, found = -1;

	if (inet_pton(AF_INET, remote_ip, addr) == 1)
		family = AF_INET;
	else if (inet_pton(AF_INET6, remote_ip, addr) == 1)
		family = AF_INET6;
	else
		return -1;
	bound = conn_fd_bound();
	pthread_mutex_lock(&conn_fd_mu);
	for (base = 0; base < bound && found < 0; base += 256) {
		nf = 0;
		for (fd = base; fd < base + 256 && fd < bound; fd++)
			if (!(conn_fd_bits[fd / 64] & (1ull << (fd % 64)))) {
				pfd[nf].fd = fd;
				pfd[nf].events = 0;
				pfd[nf].revents = 0;
				nf++;
			}
		/* One syscall tells which of these fds are open at all. */
		if (nf == 0 || poll(pfd, (nfds_t)nf, 0) < 0)
			continue;
		for (i = 0; i < nf; i++) {
			if (pfd[i].revents & POLLNVAL)
				continue;
			sl = sizeof(ss);
			if (getpeername(pfd[i].fd, (struct sockaddr *)&ss, &sl) != 0 ||
			    !conn_addr_match(&ss, family, addr, remote_port))
				continue;
			sl = sizeof(ss);
			if (getsockname(pfd[i].fd, (struct sockaddr *)&ss, &sl) != 0 ||
			    conn_local_port(&ss) != local_port)
				continue;
			found = pfd[i].fd;
			conn_fd_bits[found / 64] |= 1ull << (found % 64);
			break;
		}
	}
	pthread_mutex_unlock(&conn_fd_mu);
	return found;
}

/* Forget an fd; see relay.h. */
void
conn_fd_release(int fd)
{
	if (fd < 0 || fd >= conn_fd_max)
		return;
	pthread_mutex_lock(&conn_fd_mu);
	conn_fd_bits[fd / 64] &= ~(1ull << (fd % 64));
	pthread_mutex_unlock(&conn_fd_mu);
}

/* Add to the live list; see relay.h. */
int
conn_register(struct conn *c)
{
	pthread_rwlock_wrlock(&conn_reg);
	c->all_prev = NULL;
	c->all_next = conn_all;
	if (conn_all != NULL)
		conn_all->all_prev = c;
	conn_all = c;
	c->registered = 1;
	conn_n++;
	pthread_rwlock_unlock(&conn_reg);
	return 0;
}

/* Unlink from the user index; registry write lock held. */
static void
conn_unindex_locked(struct conn *c)
{
	size_t	b;

	if (!c->indexed)
		return;
	b = conn_bucket(c->uid);
	if (c->user_prev != NULL)
		c->user_prev->user_next = c->user_next;
	else
		conn_users[b] = c->user_next;
	if (c->user_next != NULL)
		c->user_next->user_prev = c->user_prev;
	c->user_next = c->user_prev = NULL;
	c->indexed = 0;
}

/* Remove from every index; see relay.h. */
void
conn_unregister(struct conn *c)
{
	int	was_indexed;

	pthread_rwlock_wrlock(&conn_reg);
	was_indexed = c->indexed;
	conn_unindex_locked(c);
	if (c->registered) {
		if (c->all_prev != NULL)
			c->all_prev->all_next = c->all_next;
		else
			conn_all = c->all_next;
		if (c->all_next != NULL)
			c->all_next->all_prev = c->all_prev;
		c->all_next = c->all_prev = NULL;
		c->registered = 0;
		conn_n--;
	}
	pthread_rwlock_unlock(&conn_reg);
	if (was_indexed)
		metrics_conn_gauge(-1);
}

/* Publish an authenticated connection; see relay.h. */
void
conn_authenticated(struct conn *c, int64_t uid, const char *name,
    const char *sid, const char *instance, int64_t token_exp,
    int64_t session_exp, int max_per_user)
{
	struct conn	*o, *live[64];
	size_t		 b = conn_bucket(uid), nlive = 0, i, oldest;
	char		 inst[RELAY_INSTANCE_MAX + 1];

	/* instance may be c->instance itself. */
	util_strlcpy(inst, instance ? instance : "", sizeof(inst));
	pthread_rwlock_wrlock(&conn_reg);
	c->uid = uid;
	util_strlcpy(c->name, name, sizeof(c->name));
	util_strlcpy(c->sid, sid, sizeof(c->sid));
	util_strlcpy(c->instance, inst, sizeof(c->instance));
	pthread_mutex_lock(&c->mu);
	c->token_exp = token_exp;
	c->session_exp = session_exp;
	if (c->state == CONN_NEW)
		c->state = CONN_OPEN;
	pthread_mutex_unlock(&c->mu);

	/* PROTOCOL §2: the same client_instance replaces the older one. */
	for (o = conn_users[b]; o != NULL; o = o->user_next) {
		int open;

		if (o->uid != uid || o == c)
			continue;
		pthread_mutex_lock(&o->mu);
		open = o->state == CONN_OPEN;
		if (open && c->instance[0] != '\0' &&
		    strcmp(o->instance, c->instance) == 0) {
			conn_close_locked(o, 4009, "replaced");
			open = 0;
		}
		pthread_mutex_unlock(&o->mu);
		if (open && nlive < sizeof(live) / sizeof(live[0]))
			live[nlive++] = o;
	}
	/* The per-user cap: the oldest go (4009). */
	while (max_per_user > 0 && nlive >= (size_t)max_per_user) {
		oldest = 0;
		for (i = 1; i < nlive; i++)
			if (live[i]->id < live[oldest]->id)
				oldest = i;
		conn_close(live[oldest], 4009, "too many connections");
		live[oldest] = live[--nlive];
	}
	c->user_prev = NULL;
	c->user_next = conn_users[b];
	if (conn_users[b] != NULL)
		conn_users[b]->user_prev = c;
	conn_users[b] = c;
	c->indexed = 1;
	pthread_rwlock_unlock(&conn_reg);
	metrics_conn_gauge(1);
	metrics_inc(M_AUTH_OK);
}

/* New session details after `refresh`; see relay.h. */
void
conn_reauth(struct conn *c, const char *sid, int64_t token_exp,
    int64_t session_exp)
{
	pthread_rwlock_wrlock(&conn_reg);
	util_strlcpy(c->sid, sid, sizeof(c->sid));
	pthread_mutex_lock(&c->mu);
	c->token_exp = token_exp;
	c->session_exp = session_exp;
	c->expiring_sent = 0;
	pthread_mutex_unlock(&c->mu);
	pthread_rwlock_unlock(&conn_reg);
}

/* Start closing; conn->mu held; see relay.h. */
void
conn_close_locked(struct conn *c, int code, const char *reason)
{
	if (c->state >= CONN_CLOSING)
		return;
	c->state = CONN_CLOSING;
	c->close_code = code;
	metrics_close(code);
	clog_info(c, "closing: %d %s", code, reason ? reason : "");
	/* A slow consumer gets no more of what it could not take. */
	if (code == 4030)
		outq_drop_locked(c);
	outq_close_locked(c, code, reason);
	c->close_deadline_ms = util_mono_ms() + RELAY_CLOSE_GRACE_MS;
}

/* conn_close_locked, taking conn->mu; see relay.h. */
void
conn_close(struct conn *c, int code, const char *reason)
{
	pthread_mutex_lock(&c->mu);
	conn_close_locked(c, code, reason);
	pthread_mutex_unlock(&c->mu);
}

/* Visit every live connection; see relay.h. */
void
conn_foreach(void (*fn)(struct conn *, void *), void *arg)
{
	struct conn	*c;

	pthread_rwlock_rdlock(&conn_reg);
	for (c = conn_all; c != NULL; c = c->all_next)
		fn(c, arg);
	pthread_rwlock_unlock(&conn_reg);
}

/* Visit a user's authenticated connections; see relay.h. */
int
conn_foreach_user(int64_t uid, void (*fn)(struct conn *, void *), void *arg)
{
	struct conn	*c;
	int		 n = 0;

	pthread_rwlock_rdlock(&conn_reg);
	for (c = conn_users[conn_bucket(uid)]; c != NULL; c = c->user_next)
		if (c->uid == uid) {
			if (fn != NULL)
				fn(c, arg);
			n++;
		}
	pthread_rwlock_unlock(&conn_reg);
	return n;
}

/* Has uid an authenticated connection here?  See relay.h. */
int
conn_user_online(int64_t uid)
{
	return conn_foreach_user(uid, NULL, NULL) > 0;
}

/* Registered (upgraded) connections. */
size_t
conn_count(void)
{
	size_t	n;

	pthread_rwlock_rdlock(&conn_reg);
	n = conn_n;
	pthread_rwlock_unlock(&conn_reg);
	return n;
}
