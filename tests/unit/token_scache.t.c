/*
 * token_scache.t.c: the session cache (token-fcgi/scache.c) without a
 * database: what is answered and for how long (TTL, the session's own
 * expiry), what a revocation, a logout, a flush or the LISTEN connection
 * going down removes, the ticket that keeps a row read before a revocation
 * out of the cache, the parley_session payloads, clock eviction at
 * capacity, and threads hitting it at once (run it under TSan).  The LISTEN
 * thread itself is covered end to end (tests/e2e/token-cache.test.mjs).
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "tap.h"
#include "token.h"

#define TTL	30000		/* ms */
#define T0	1000000		/* monotonic ms of the tests */
#define NOW	1795687200	/* wall-clock seconds */

/* Cookie hash number i (any 32 bytes will do; the cache does not hash). */
static void
key(unsigned char h[UTIL_SHA256_LEN], int i)
{
	char	s[32];

	snprintf(s, sizeof(s), "cookie-%d", i);
	util_sha256(s, strlen(s), h);
}

static struct store_user
user(int64_t id, const char *sid, int64_t expires_at)
{
	struct store_user	u;

	memset(&u, 0, sizeof(u));
	u.id = id;
	snprintf(u.name, sizeof(u.name), "user %lld", (long long)id);
	util_strlcpy(u.sid, sid, sizeof(u.sid));
	u.expires_at = expires_at;
	return u;
}

/* Store cookie i -> (id, sid) with a fresh ticket at time T0. */
static int
put(int i, int64_t id, const char *sid)
{
	unsigned char		h[UTIL_SHA256_LEN];
	struct store_user	u = user(id, sid, NOW + 3600);

	key(h, i);
	return scache_put(h, &u, scache_ticket(), T0);
}

/* Is cookie i answered at (mono, now)? */
static int
hit_at(int i, int64_t mono, int64_t now)
{
	unsigned char		h[UTIL_SHA256_LEN];
	struct store_user	u;

	key(h, i);
	return scache_get(h, mono, now, &u);
}

static int
hit(int i)
{
	return hit_at(i, T0 + 1, NOW);
}

static void
fresh(size_t cap)
{
	scache_free();
	if (scache_init(cap, TTL) < 0) {
		diag("scache_init failed");
		exit(1);
	}
	scache_set_live(1);
}

static void
test_basics(void)
{
	unsigned char		h[UTIL_SHA256_LEN];
	struct store_user	u = user(42, "17", NOW + 60), got;
	struct scache_stats	st;

	ok(!scache_enabled(), "not enabled before scache_init");
	is_int((int)scache_ticket(), 0, "no ticket without a cache");
	key(h, 1);
	ok(!scache_get(h, T0, NOW, &got), "no cache: a miss");
	ok(!scache_put(h, &u, 1, T0), "no cache: nothing stored");

	ok(scache_init(16, TTL) == 0 && scache_enabled(), "scache_init");
	ok(scache_init(16, TTL) < 0, "a second scache_init is refused");
	is_int((int)scache_ticket(), 0, "not live: ticket 0");
	ok(!scache_put(h, &u, scache_ticket(), T0), "not live: nothing stored");
	ok(!scache_put(h, &u, 1, T0), "not live: nothing stored, whatever the ticket");
	ok(!scache_get(h, T0, NOW, &got), "not live: a miss");

	scache_set_live(1);
	ok(scache_ticket() != 0, "live: a ticket");
	ok(scache_put(h, &u, scache_ticket(), T0), "live: stored");
	memset(&got, 0, sizeof(got));
	ok(scache_get(h, T0 + 5, NOW, &got), "then answered");
	ok(got.id == 42 && strcmp(got.sid, "17") == 0 &&
	    strcmp(got.name, "user 42") == 0 && got.expires_at == NOW + 60,
	    "with the row that was stored");
	key(h, 2);
	ok(!scache_get(h, T0 + 5, NOW, &got), "another cookie: a miss");

	scache_stats(&st);
	ok(st.hits == 1 && st.stores == 1 && st.entries == 1,
	    "stats: %llu hits, %llu stored, %zu entries",
	    (unsigned long long)st.hits, (unsigned long long)st.stores,
	    st.entries);
	ok(st.misses == 2, "stats: the 2 misses since scache_init (%llu)",
	    (unsigned long long)st.misses);
	scache_free();
	ok(!scache_enabled(), "scache_free");
	ok(scache_init(0, TTL) < 0 && scache_init(8, 0) < 0,
	    "zero capacity or TTL refused");
}

static void
test_lifetimes(void)
{
	unsigned char		h[UTIL_SHA256_LEN];
	struct store_user	u = user(7, "s7", NOW + 10), got;

	fresh(16);
	key(h, 7);
	ok(scache_put(h, &u, scache_ticket(), T0), "stored at T0");
	ok(scache_get(h, T0 + TTL - 1, NOW, &got), "answered until the TTL");
	ok(!scache_get(h, T0 + TTL, NOW, &got), "not at the TTL");
	ok(!scache_get(h, T0 - 1, NOW, &got),
	    "not before it was stored (a clock that went back)");
	ok(scache_get(h, T0 + 1, NOW + 9, &got),
	    "answered the second before the session expires");
	ok(!scache_get(h, T0 + 1, NOW + 10, &got),
	    "never at the session's expires_at");
	ok(!scache_get(h, T0 + 1, NOW + 1000, &got), "nor after it");
	u = user(7, "s7", NOW - 1);
	ok(scache_put(h, &u, scache_ticket(), T0),
	    "an already expired row may be stored");
	ok(!scache_get(h, T0 + 1, NOW, &got), "but is never answered");
}

static void
test_ticket(void)
{
	unsigned char		h[UTIL_SHA256_LEN];
	struct store_user	u = user(5, "55", NOW + 3600);
	uint64_t		t;

	fresh(16);
	key(h, 5);
	/* A lookup starts, its row is revoked and notified, then it stores. */
	t = scache_ticket();
	is_int((int)scache_revoke("55"), 0, "revocation of an uncached sid");
	ok(!scache_put(h, &u, t, T0),
	    "a row read before a revocation is not stored after it");
	ok(!hit(5), "and not answered");
	t = scache_ticket();
	scache_forget(h);
	ok(!scache_put(h, &u, t, T0), "nor after a logout in this process");
	t = scache_ticket();
	scache_flush();
	ok(!scache_put(h, &u, t, T0), "nor after a flush");
	t = scache_ticket();
	scache_set_live(0);
	scache_set_live(1);
	ok(!scache_put(h, &u, t, T0),
	    "nor after the LISTEN connection went down and came back");
	ok(scache_put(h, &u, scache_ticket(), T0), "a fresh ticket stores");
	ok(hit(5), "and is answered");
}

static void
test_invalidation(void)
{
	unsigned char		h[UTIL_SHA256_LEN];
	struct scache_stats	st;

	fresh(64);
	ok(put(1, 10, "a") && put(2, 10, "a") && put(3, 11, "b") &&
	    put(4, 12, "c"), "four cookies, two of them with session a");
	is_int((int)scache_revoke("a"), 2, "revoking a drops both its cookies");
	ok(!hit(1) && !hit(2), "neither is answered");
	ok(hit(3) && hit(4), "the other sessions are");
	is_int((int)scache_revoke("a"), 0, "revoking again drops nothing");
	is_int((int)scache_revoke("c "), 0, "sids match exactly");

	key(h, 3);
	scache_forget(h);
	ok(!hit(3) && hit(4), "forget drops one cookie only");

	/* A cookie stored again with another session: the old sid no longer names it. */
	ok(put(4, 12, "d"), "cookie 4 stored again for session d");
	is_int((int)scache_revoke("c"), 0, "its old session's revocation drops nothing");
	ok(hit(4), "so it is still answered");
	is_int((int)scache_revoke("d"), 1, "its new session's drops it");

	ok(put(5, 1, "e") && put(6, 2, "f"), "two more");
	scache_flush();
	ok(!hit(5) && !hit(6), "flush drops everything");
	ok(put(5, 1, "e"), "stored after the flush");
	scache_set_live(0);
	ok(!hit(5), "not answered while the LISTEN connection is down");
	ok(!put(6, 2, "f"), "nor stored");
	scache_set_live(1);
	ok(!hit(5), "and the cache starts empty when it is back");
	scache_stats(&st);
	is_int((int)st.entries, 0, "no entries left");
	ok(st.revoked == 3, "stats: 3 revoked (%llu)",
	    (unsigned long long)st.revoked);
}

static void
test_notify(void)
{
	fresh(64);
	ok(put(1, 1, "12") && put(2, 2, "13"), "two sessions");
	is_int((int)scache_notify("{\"op\":\"revoke\",\"sid\":\"12\",\"user\":1}"),
	    1, "revoke payload drops its sid");
	ok(!hit(1) && hit(2), "only that one");
	ok(put(1, 1, "12"), "stored again");
	is_int((int)scache_notify("{\"op\":\"revoke\",\"sid\":12,\"user\":1}"), 1,
	    "a numeric sid is understood too");
	ok(hit(2), "the other stays");
	scache_notify("{\"op\":\"truncate\"}");
	ok(!hit(2), "truncate drops everything");

	ok(put(1, 1, "12") && put(2, 2, "13"), "two again");
	scache_notify("{\"op\":\"revoke\",\"user\":1}");
	ok(!hit(1) && !hit(2), "a revoke without a sid drops everything");
	ok(put(1, 1, "12"), "stored");
	scache_notify("not json");
	ok(!hit(1), "so does a payload that is not JSON");
	ok(put(1, 1, "12"), "stored");
	scache_notify("{\"op\":\"rename\",\"sid\":\"12\"}");
	ok(!hit(1), "and an operation it does not know");
	ok(put(1, 1, "12"), "stored");
	scache_notify("{\"op\":\"revoke\",\"sid\":\"12\",\"op\":\"x\"}");
	ok(!hit(1), "and duplicated members");
	ok(put(1, 1, "12") && put(2, 2, "13"), "two");
	scache_notify("{\"op\":\"revoke\",\"sid\":\"1\\u00002\"}");
	ok(!hit(1) && !hit(2), "and a sid with a NUL in it");
	scache_notify(NULL);
	ok(1, "a NULL payload does not crash");
}

static void
test_eviction(void)
{
	struct scache_stats	st;
	int			i;

	fresh(4);
	for (i = 0; i < 4; i++)
		put(i, i + 1, i == 0 ? "s0" : i == 1 ? "s1" : i == 2 ? "s2" : "s3");
	ok(hit(0) && hit(1), "full (4 of 4); cookies 0 and 1 used");
	ok(put(4, 5, "s4") && put(5, 6, "s5"), "two more stored");
	scache_stats(&st);
	ok(st.entries == 4 && st.evictions == 2, "still 4 entries, 2 evicted");
	ok(hit(0) && hit(1) && hit(4) && hit(5), "the used ones and the new ones stay");
	ok(!hit(2) && !hit(3), "the unused ones went");
	is_int((int)scache_revoke("s2"), 0, "an evicted session is in no chain");
	is_int((int)scache_revoke("s4"), 1, "a new one is");

	/* Entries past their TTL go first, whatever was used. */
	fresh(2);
	put(0, 1, "x");
	ok(hit(0), "cookie 0 used");
	{
		unsigned char		h[UTIL_SHA256_LEN];
		struct store_user	u = user(2, "y", NOW + 3600);

		key(h, 1);
		scache_put(h, &u, scache_ticket(), T0 + TTL / 2);
		key(h, 2);
		u = user(3, "z", NOW + 3600);
		ok(scache_put(h, &u, scache_ticket(), T0 + TTL + 1),
		    "full, cookie 0 stale: a third stored");
	}
	ok(!hit_at(0, T0 + TTL + 2, NOW), "the stale one was evicted");
	ok(hit_at(1, T0 + TTL + 2, NOW) && hit_at(2, T0 + TTL + 2, NOW),
	    "the fresh ones stay");

	/* Many more sessions than room: never more entries than capacity. */
	fresh(100);
	for (i = 0; i < 1000; i++) {
		char	sid[16];

		snprintf(sid, sizeof(sid), "m%d", i);
		put(1000 + i, i + 1, sid);
		if (i % 3 == 0)
			hit(1000 + i / 2);
	}
	scache_stats(&st);
	ok(st.entries == 100 && st.evictions == 900,
	    "1000 stored into 100: %zu entries, %llu evicted", st.entries,
	    (unsigned long long)st.evictions);
	ok(hit(1999), "the last one is there");
}

/* ------------------------------------------------------------ threads */

#define NKEYS		64
#define NTHREADS	6
#define ROUNDS		20000

static int	bad_hits;	/* under bad_lock */
static pthread_mutex_t bad_lock = PTHREAD_MUTEX_INITIALIZER;

/* Cookie k always names session "t<k>" of user k + 1. */
static void *
worker(void *arg)
{
	unsigned int		seed = (unsigned int)(uintptr_t)arg;
	unsigned char		h[UTIL_SHA256_LEN];
	struct store_user	u, got;
	char			sid[16];
	uint64_t		t;
	int			i, k, r, bad = 0;

	for (i = 0; i < ROUNDS; i++) {
		k = rand_r(&seed) % NKEYS;
		r = rand_r(&seed) % 100;
		key(h, k);
		snprintf(sid, sizeof(sid), "t%d", k);
		if (r < 70) {
			if (scache_get(h, T0 + 1, NOW, &got) &&
			    (got.id != k + 1 || strcmp(got.sid, sid) != 0))
				bad++;
		} else if (r < 90) {
			t = scache_ticket();
			u = user(k + 1, sid, NOW + 3600);
			scache_put(h, &u, t, T0);
		} else if (r < 96) {
			scache_revoke(sid);
		} else if (r < 99) {
			scache_forget(h);
		} else {
			scache_notify("{\"op\":\"revoke\",\"sid\":\"t1\",\"user\":2}");
		}
	}
	pthread_mutex_lock(&bad_lock);
	bad_hits += bad;
	pthread_mutex_unlock(&bad_lock);
	return NULL;
}

/* The LISTEN connection going down and up, as its thread does it. */
static void *
flapper(void *arg)
{
	int	i;

	(void)arg;
	for (i = 0; i < 200; i++) {
		scache_set_live(i % 2);
		if (i % 7 == 0)
			scache_flush();
	}
	scache_set_live(1);
	return NULL;
}

static void
test_threads(void)
{
	pthread_t		t[NTHREADS + 1];
	struct scache_stats	st;
	int			i, started = 0;

	fresh(48);	/* fewer entries than keys: evictions too */
	for (i = 0; i < NTHREADS; i++)
		if (pthread_create(&t[i], NULL, worker,
		    (void *)(uintptr_t)(i + 1)) == 0)
			started++;
	if (pthread_create(&t[NTHREADS], NULL, flapper, NULL) == 0)
		started++;
	for (i = 0; i < NTHREADS + 1; i++)
		pthread_join(t[i], NULL);
	is_int(started, NTHREADS + 1, "threads started");
	is_int(bad_hits, 0, "every hit returned its own cookie's session");
	scache_stats(&st);
	ok(st.entries <= 48, "never above capacity (%zu)", st.entries);
	ok(st.hits + st.misses > 0, "%llu hits, %llu misses, %llu stored",
	    (unsigned long long)st.hits, (unsigned long long)st.misses,
	    (unsigned long long)st.stores);
	ok(put(1, 2, "t1") && hit(1), "still works afterwards");
}

int
main(void)
{
	log_init("token_scache.t", LOG_LEVEL_ERROR);
	test_basics();
	test_lifetimes();
	test_ticket();
	test_invalidation();
	test_notify();
	test_eviction();
	test_threads();
	scache_free();
	done_testing();
	return exit_status();
}
