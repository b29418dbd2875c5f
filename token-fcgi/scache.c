/*
 * scache.c: the session cache, and the thread that keeps it honest.
 *
 * A token request needs the session its cookie names.  Asking
 * parley.session_lookup every time costs a database round trip per token
 * (most of the CPU of both processes); this cache remembers what the
 * database answered, for at most PARLEY_SESSION_CACHE, and forgets it the
 * moment the database says the session was revoked: a thread holds a LISTEN
 * connection on channel parley_session (schema/README.md) and drops the
 * revoked sid's entries.  While that connection is down, nothing is
 * answered from memory, and when it is back the cache starts empty, because
 * notifications sent in between are lost.  The TTL bounds what nothing
 * notifies: a redefined session_lookup over an application's tables whose
 * revocations send no notification, a session row whose expires_at was
 * moved earlier, a renamed user.
 *
 * Layout: a fixed array of entries, two chained hash tables over it (by
 * cookie hash, by sid, so a revocation does not scan), a free list, and a
 * clock hand for eviction when full.  One reader-writer lock (writers
 * preferred): hits take it shared and only set the entry's clock bit, an
 * atomic; stores, revocations and flushes take it exclusive.  Every
 * invalidation increments a generation counter, and a store is refused
 * unless the generation is still the one taken before its database query,
 * so a row read just before its revocation committed cannot be stored
 * after the notification was handled.
 *
 * The cookie hashes are the database's token_hash values: they are wiped
 * when an entry goes.  Nothing here logs above debug level except the
 * LISTEN connection's state.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "token.h"

#define SCACHE_BACKOFF_MIN_MS	100
#define SCACHE_BACKOFF_MAX_MS	5000
#define SCACHE_CHECK_MS		1000	/* re-read PARLEY_DB this often */
#define SCACHE_JOIN_TIMEOUT_S	2	/* it may be connecting (up to 5 s) */

struct scache_ent {
	unsigned char		 key[UTIL_SHA256_LEN];
	int32_t			 knext;		/* key chain, or free list */
	int32_t			 snext;		/* sid chain */
	uint32_t		 shash;
	int			 used;
	atomic_uchar		 ref;		/* clock bit, set on hits */
	int64_t			 cached_ms;	/* monotonic */
	struct store_user	 u;
};

static struct {
	int			 on;		/* set up; read-only while used */
	pthread_rwlock_t	 lock;
	struct scache_ent	*ents;
	uint32_t		 cap;
	int32_t			*kb, *sb;	/* bucket heads, -1: empty */
	uint32_t		 mask;
	int32_t			 free;		/* free list head */
	uint32_t		 hand;
	uint32_t		 count;
	int64_t			 ttl_ms;
	_Atomic uint64_t	 gen;		/* changed under the write lock */
	atomic_int		 live;		/* changed under the write lock */
	_Atomic uint64_t	 hits, misses, stores, revoked, flushes, evictions;

	/* The LISTEN thread. */
	pthread_t		 thread;
	int			 started;
	int			 wake_fd;	/* eventfd: readable = stop */
	atomic_int		 stopping;
	int			 stuck;		/* it would not stop: never free */
} sc = { .wake_fd = -1 };

/* Bucket of a cookie hash: it is SHA-256 output, so any bytes will do. */
static uint32_t
scache_khash(const unsigned char *key)
{
	uint32_t	h;

	memcpy(&h, key, sizeof(h));
	return h;
}

/* FNV-1a of a sid. */
static uint32_t
scache_shash(const char *sid)
{
	uint32_t	h = 2166136261u;

	for (; *sid != '\0'; sid++)
		h = (h ^ (unsigned char)*sid) * 16777619u;
	return h;
}

/* See token.h. */
int
scache_init(size_t capacity, int64_t ttl_ms)
{
	pthread_rwlockattr_t	attr;
	uint32_t		nb = 1, i;

	if (sc.on || capacity == 0 || capacity > (1u << 30) || ttl_ms <= 0)
		return -1;
	while (nb < capacity)
		nb <<= 1;
	sc.ents = calloc(capacity, sizeof(*sc.ents));
	sc.kb = malloc(nb * sizeof(*sc.kb));
	sc.sb = malloc(nb * sizeof(*sc.sb));
	if (sc.ents == NULL || sc.kb == NULL || sc.sb == NULL) {
		free(sc.ents);
		free(sc.kb);
		free(sc.sb);
		sc.ents = NULL;
		sc.kb = sc.sb = NULL;
		return -1;
	}
	for (i = 0; i < nb; i++)
		sc.kb[i] = sc.sb[i] = -1;
	sc.cap = (uint32_t)capacity;
	for (i = 0; i < sc.cap; i++) {
		sc.ents[i].knext = i + 1 < sc.cap ? (int32_t)(i + 1) : -1;
		sc.ents[i].snext = -1;
		atomic_init(&sc.ents[i].ref, 0);
	}
	sc.free = 0;
	sc.mask = nb - 1;
	sc.hand = 0;
	sc.count = 0;
	sc.ttl_ms = ttl_ms;
	atomic_init(&sc.gen, 1);
	atomic_init(&sc.live, 0);
	atomic_init(&sc.hits, 0);
	atomic_init(&sc.misses, 0);
	atomic_init(&sc.stores, 0);
	atomic_init(&sc.revoked, 0);
	atomic_init(&sc.flushes, 0);
	atomic_init(&sc.evictions, 0);
	atomic_init(&sc.stopping, 0);
	/* Writers first: a revocation must not wait behind a stream of hits. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
	    PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&sc.lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	sc.on = 1;
	return 0;
}

/* See token.h. */
void
scache_free(void)
{
	if (!sc.on || sc.stuck)
		return;
	explicit_bzero(sc.ents, (size_t)sc.cap * sizeof(*sc.ents));
	free(sc.ents);
	free(sc.kb);
	free(sc.sb);
	pthread_rwlock_destroy(&sc.lock);
	sc.ents = NULL;
	sc.kb = sc.sb = NULL;
	sc.cap = 0;
	sc.on = 0;
}

/* See token.h. */
int
scache_enabled(void)
{
	return sc.on;
}

/* Unlink entry i from both chains and put it on the free list (write lock). */
static void
scache_drop(int32_t i)
{
	struct scache_ent	*e = &sc.ents[i];
	int32_t			*pp;

	for (pp = &sc.kb[scache_khash(e->key) & sc.mask]; *pp != -1;
	    pp = &sc.ents[*pp].knext)
		if (*pp == i) {
			*pp = e->knext;
			break;
		}
	for (pp = &sc.sb[e->shash & sc.mask]; *pp != -1;
	    pp = &sc.ents[*pp].snext)
		if (*pp == i) {
			*pp = e->snext;
			break;
		}
	explicit_bzero(e->key, sizeof(e->key));
	memset(&e->u, 0, sizeof(e->u));
	e->used = 0;
	e->snext = -1;
	atomic_store_explicit(&e->ref, 0, memory_order_relaxed);
	e->knext = sc.free;
	sc.free = i;
	sc.count--;
}

/* The entry of a key, or -1 (either lock). */
static int32_t
scache_find(const unsigned char *key)
{
	int32_t	i;

	for (i = sc.kb[scache_khash(key) & sc.mask]; i != -1;
	    i = sc.ents[i].knext)
		if (memcmp(sc.ents[i].key, key, UTIL_SHA256_LEN) == 0)
			return i;
	return -1;
}

/* Empty everything (write lock). */
static void
scache_clear(void)
{
	uint32_t	i;

	for (i = 0; i < sc.cap; i++)
		if (sc.ents[i].used)
			scache_drop((int32_t)i);
}

/* A slot for a new entry: the free list, else the clock's victim (write lock). */
static int32_t
scache_slot(int64_t mono_ms)
{
	struct scache_ent	*e;
	int32_t			 i;

	if (sc.free != -1) {
		i = sc.free;
		sc.free = sc.ents[i].knext;
		sc.count++;
		return i;
	}
	/* Full: at most two turns of the hand find an unreferenced entry. */
	for (;;) {
		i = (int32_t)sc.hand;
		sc.hand = (sc.hand + 1) % sc.cap;
		e = &sc.ents[i];
		if (mono_ms - e->cached_ms < sc.ttl_ms &&
		    atomic_exchange_explicit(&e->ref, 0, memory_order_relaxed))
			continue;
		scache_drop(i);
		atomic_fetch_add_explicit(&sc.evictions, 1, memory_order_relaxed);
		sc.free = sc.ents[i].knext;
		sc.count++;
		return i;
	}
}

/* See token.h. */
uint64_t
scache_ticket(void)
{
	if (!sc.on || !atomic_load(&sc.live))
		return 0;
	return atomic_load(&sc.gen);
}

/* See token.h. */
int
scache_get(const unsigned char hash[UTIL_SHA256_LEN], int64_t mono_ms,
    int64_t now_s, struct store_user *out)
{
	struct scache_ent	*e;
	int32_t			 i;
	int			 hit = 0;

	if (!sc.on)
		return 0;
	if (atomic_load_explicit(&sc.live, memory_order_acquire)) {
		pthread_rwlock_rdlock(&sc.lock);
		/* Checked again under the lock: going down flushes under it. */
		if (atomic_load_explicit(&sc.live, memory_order_relaxed) &&
		    (i = scache_find(hash)) != -1) {
			e = &sc.ents[i];
			if (mono_ms - e->cached_ms < sc.ttl_ms &&
			    mono_ms >= e->cached_ms && now_s < e->u.expires_at) {
				*out = e->u;
				atomic_store_explicit(&e->ref, 1,
				    memory_order_relaxed);
				hit = 1;
			}
		}
		pthread_rwlock_unlock(&sc.lock);
	}
	atomic_fetch_add_explicit(hit ? &sc.hits : &sc.misses, 1,
	    memory_order_relaxed);
	return hit;
}

/* See token.h. */
int
scache_put(const unsigned char hash[UTIL_SHA256_LEN],
    const struct store_user *u, uint64_t ticket, int64_t mono_ms)
{
	struct scache_ent	*e;
	int32_t			 i;
	uint32_t		 b;
	int			 stored = 0;

	if (!sc.on || ticket == 0 || u->sid[0] == '\0')
		return 0;
	pthread_rwlock_wrlock(&sc.lock);
	if (!atomic_load(&sc.live) || atomic_load(&sc.gen) != ticket)
		goto out;
	if ((i = scache_find(hash)) != -1)
		scache_drop(i);		/* replaced: its sid may differ */
	i = scache_slot(mono_ms);
	e = &sc.ents[i];
	memcpy(e->key, hash, UTIL_SHA256_LEN);
	e->u = *u;
	e->cached_ms = mono_ms;
	e->shash = scache_shash(u->sid);
	e->used = 1;
	atomic_store_explicit(&e->ref, 0, memory_order_relaxed);
	b = scache_khash(hash) & sc.mask;
	e->knext = sc.kb[b];
	sc.kb[b] = i;
	b = e->shash & sc.mask;
	e->snext = sc.sb[b];
	sc.sb[b] = i;
	stored = 1;
	atomic_fetch_add_explicit(&sc.stores, 1, memory_order_relaxed);
out:
	pthread_rwlock_unlock(&sc.lock);
	return stored;
}

/* See token.h. */
void
scache_forget(const unsigned char hash[UTIL_SHA256_LEN])
{
	int32_t	i;

	if (!sc.on)
		return;
	pthread_rwlock_wrlock(&sc.lock);
	atomic_fetch_add(&sc.gen, 1);
	if ((i = scache_find(hash)) != -1)
		scache_drop(i);
	pthread_rwlock_unlock(&sc.lock);
}

/* See token.h. */
size_t
scache_revoke(const char *sid)
{
	uint32_t	h = scache_shash(sid);
	int32_t		i, next;
	size_t		n = 0;

	if (!sc.on)
		return 0;
	pthread_rwlock_wrlock(&sc.lock);
	atomic_fetch_add(&sc.gen, 1);
	for (i = sc.sb[h & sc.mask]; i != -1; i = next) {
		next = sc.ents[i].snext;
		if (sc.ents[i].shash == h && strcmp(sc.ents[i].u.sid, sid) == 0) {
			scache_drop(i);
			n++;
		}
	}
	pthread_rwlock_unlock(&sc.lock);
	atomic_fetch_add_explicit(&sc.revoked, n, memory_order_relaxed);
	return n;
}

/* See token.h. */
void
scache_flush(void)
{
	if (!sc.on)
		return;
	pthread_rwlock_wrlock(&sc.lock);
	atomic_fetch_add(&sc.gen, 1);
	scache_clear();
	pthread_rwlock_unlock(&sc.lock);
	atomic_fetch_add_explicit(&sc.flushes, 1, memory_order_relaxed);
}

/* See token.h. */
void
scache_set_live(int live)
{
	if (!sc.on)
		return;
	pthread_rwlock_wrlock(&sc.lock);
	atomic_fetch_add(&sc.gen, 1);
	scache_clear();
	atomic_store_explicit(&sc.live, live ? 1 : 0, memory_order_release);
	pthread_rwlock_unlock(&sc.lock);
	atomic_fetch_add_explicit(&sc.flushes, 1, memory_order_relaxed);
}

/* See token.h. */
size_t
scache_notify(const char *payload)
{
	struct scache_stats	 st;
	json_t			*j, *v;
	const char		*op;
	char			 sid[sizeof(((struct store_user *)0)->sid)];
	size_t			 n;
	int			 truncate;

	j = json_loads(payload ? payload : "", JSON_REJECT_DUPLICATES, NULL);
	op = json_string_value(json_object_get(j, "op"));
	v = json_object_get(j, "sid");
	if (op != NULL && strcmp(op, "revoke") == 0 &&
	    ((json_is_string(v) && json_string_length(v) > 0 &&
	    json_string_length(v) < sizeof(sid) &&
	    strlen(json_string_value(v)) == json_string_length(v)) ||
	    json_is_integer(v))) {
		/* sid is a string (schema/README.md); a number is taken too. */
		if (json_is_string(v))
			util_strlcpy(sid, json_string_value(v), sizeof(sid));
		else
			snprintf(sid, sizeof(sid), "%lld",
			    (long long)json_integer_value(v));
		json_decref(j);
		n = scache_revoke(sid);
		log_debug("session cache: revoke sid=%.64s: %zu dropped", sid, n);
		return n;
	}
	truncate = op != NULL && strcmp(op, "truncate") == 0;
	json_decref(j);
	scache_stats(&st);
	scache_flush();
	if (truncate)
		log_debug("session cache: truncate: %zu dropped", st.entries);
	else
		log_warnx_ratelimited(60, "session cache: unexpected "
		    "notification on %s; everything dropped", SCACHE_CHANNEL);
	return st.entries;
}

/* See token.h. */
void
scache_stats(struct scache_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!sc.on)
		return;
	st->hits = atomic_load(&sc.hits);
	st->misses = atomic_load(&sc.misses);
	st->stores = atomic_load(&sc.stores);
	st->revoked = atomic_load(&sc.revoked);
	st->flushes = atomic_load(&sc.flushes);
	st->evictions = atomic_load(&sc.evictions);
	pthread_rwlock_rdlock(&sc.lock);
	st->entries = sc.count;
	pthread_rwlock_unlock(&sc.lock);
}

/* ------------------------------------------------------------ LISTEN */

/* Sleep up to ms unless stopping; 1 when it is time to stop. */
static int
scache_nap(int ms)
{
	struct pollfd	pfd = { sc.wake_fd, POLLIN, 0 };

	if (atomic_load(&sc.stopping))
		return 1;
	return poll(&pfd, 1, ms) > 0 || atomic_load(&sc.stopping);
}

/* The current configuration's conninfo, copied (NULL: out of memory). */
static char *
scache_conninfo(void)
{
	struct conf	*c = conf_acquire();
	char		*s;

	s = strdup(c != NULL ? c->db : "");
	conf_release(c);
	return s;
}

/* Connect and LISTEN: the connection, or NULL with err set. */
static PGconn *
scache_listen_open(const char *conninfo, char *err, size_t errlen)
{
	PGconn		*conn;
	PGresult	*res;
	char		*nl;

	if ((conn = db_connect(conninfo, TOKEN_PROGNAME, err, errlen)) == NULL)
		return NULL;
	res = PQexec(conn, "LISTEN " SCACHE_CHANNEL);
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		util_strlcpy(err, res ? PQresultErrorMessage(res) :
		    PQerrorMessage(conn), errlen);
		if ((nl = strchr(err, '\n')) != NULL)
			*nl = '\0';
		PQclear(res);
		PQfinish(conn);
		return NULL;
	}
	PQclear(res);
	return conn;
}

/*
 * Wait for notifications until the connection breaks (returns -1 with err
 * set), PARLEY_DB changes (0) or the thread is to stop (1).
 */
static int
scache_listen_wait(PGconn *conn, const char *conninfo, char *err,
    size_t errlen)
{
	struct pollfd	 pfd[2];
	PGnotify	*nt;
	char		*cur, *nl;
	int		 n, changed;

	for (;;) {
		pfd[0].fd = PQsocket(conn);
		pfd[0].events = POLLIN;
		pfd[1].fd = sc.wake_fd;
		pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		if ((n = poll(pfd, 2, SCACHE_CHECK_MS)) < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		if (pfd[1].revents != 0 || atomic_load(&sc.stopping))
			return 1;
		if (n == 0) {
			if ((cur = scache_conninfo()) == NULL)
				continue;
			changed = strcmp(cur, conninfo) != 0;
			explicit_bzero(cur, strlen(cur));
			free(cur);
			if (changed)
				return 0;
			continue;
		}
		if (!PQconsumeInput(conn)) {
			util_strlcpy(err, PQerrorMessage(conn), errlen);
			if ((nl = strchr(err, '\n')) != NULL)
				*nl = '\0';
			return -1;
		}
		while ((nt = PQnotifies(conn)) != NULL) {
			if (strcmp(nt->relname, SCACHE_CHANNEL) == 0)
				(void)scache_notify(nt->extra);
			PQfreemem(nt);
		}
		if (PQstatus(conn) != CONNECTION_OK) {
			util_strlcpy(err, "connection closed", errlen);
			return -1;
		}
	}
}

static void *
scache_listen_main(void *arg)
{
	PGconn	*conn;
	char	*conninfo;
	char	 err[256];
	int	 backoff = 0, r;

	(void)arg;
	while (!atomic_load(&sc.stopping)) {
		if ((conninfo = scache_conninfo()) == NULL) {
			if (scache_nap(SCACHE_BACKOFF_MAX_MS))
				break;
			continue;
		}
		conn = scache_listen_open(conninfo, err, sizeof(err));
		if (conn == NULL) {
			log_warnx_ratelimited(30, "session cache: cannot LISTEN "
			    "on %s (%s); every session is looked up in the "
			    "database until it can", SCACHE_CHANNEL, err);
			explicit_bzero(conninfo, strlen(conninfo));
			free(conninfo);
			backoff = backoff == 0 ? SCACHE_BACKOFF_MIN_MS :
			    backoff * 2 > SCACHE_BACKOFF_MAX_MS ?
			    SCACHE_BACKOFF_MAX_MS : backoff * 2;
			if (scache_nap(backoff))
				break;
			continue;
		}
		backoff = 0;
		/* Empty, then live: what was revoked meanwhile is not in it. */
		scache_set_live(1);
		log_info("session cache: listening on %s; sessions are "
		    "answered from memory for up to %lld ms", SCACHE_CHANNEL,
		    (long long)sc.ttl_ms);
		r = scache_listen_wait(conn, conninfo, err, sizeof(err));
		scache_set_live(0);
		PQfinish(conn);
		explicit_bzero(conninfo, strlen(conninfo));
		free(conninfo);
		if (r < 0)
			log_warnx("session cache: LISTEN connection lost (%s); "
			    "every session is looked up in the database until "
			    "it is back", err);
		else if (r == 0)
			log_info("session cache: database changed; listening "
			    "again");
	}
	return NULL;
}

/* See token.h. */
int
scache_start(void)
{
	if (!sc.on || sc.started)
		return -1;
	atomic_store(&sc.stopping, 0);
	if ((sc.wake_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
		log_warn("session cache: eventfd");
		return -1;
	}
	if (pthread_create(&sc.thread, NULL, scache_listen_main, NULL) != 0) {
		log_warnx("session cache: cannot start the LISTEN thread");
		close(sc.wake_fd);
		sc.wake_fd = -1;
		return -1;
	}
	sc.started = 1;
	return 0;
}

/* See token.h. */
void
scache_stop(void)
{
	struct timespec	deadline;
	uint64_t	one = 1;

	if (!sc.started)
		return;
	atomic_store(&sc.stopping, 1);
	if (write(sc.wake_fd, &one, sizeof(one)) != sizeof(one))
		log_warn("session cache: eventfd write");
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += SCACHE_JOIN_TIMEOUT_S;
	if (pthread_timedjoin_np(sc.thread, NULL, &deadline) != 0) {
		/*
		 * Stuck connecting: leave it, with the cache it may still
		 * touch, to the process's exit.
		 */
		log_warnx("session cache: LISTEN thread did not stop");
		sc.started = 0;
		sc.stuck = 1;
		return;
	}
	close(sc.wake_fd);
	sc.wake_fd = -1;
	sc.started = 0;
	scache_set_live(0);
}
