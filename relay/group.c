/*
 * group.c: the group membership cache.
 *
 * group id -> sorted member ids, as parley.group_member_ids says.  Only the
 * listener thread fills and changes it: it loads a group on the LISTEN
 * connection when a message for it arrives, and applies parley_member
 * notifications as they come on that same connection, so the cache and the
 * message stream are always in commit order with each other.
 *
 * Notifications are lost while the listener is disconnected, so the cache
 * is flushed and disabled until it is back.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

#define GROUP_BUCKETS	1024

struct group_entry {
	int64_t			 gid;
	int64_t			*ids;
	size_t			 n, cap;
	int64_t			 used_ms;
	struct group_entry	*next;
};

static pthread_mutex_t		 group_mu = PTHREAD_MUTEX_INITIALIZER;
static struct group_entry	*group_tab[GROUP_BUCKETS];
static int			 group_valid;

static size_t
group_bucket(int64_t gid)
{
	return (size_t)(((uint64_t)gid * 0x9e3779b97f4a7c15ull) >> 54) %
	    GROUP_BUCKETS;
}

static struct group_entry *
group_find_locked(int64_t gid)
{
	struct group_entry	*e;

	for (e = group_tab[group_bucket(gid)]; e != NULL; e = e->next)
		if (e->gid == gid)
			return e;
	return NULL;
}

/* Index of uid in e->ids, or -(insertion point) - 1. */
static ssize_t
group_search(const struct group_entry *e, int64_t uid)
{
	size_t	lo = 0, hi = e->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (e->ids[mid] == uid)
			return (ssize_t)mid;
		if (e->ids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(ssize_t)lo - 1;
}

static void
group_flush_locked(void)
{
	struct group_entry	*e, *next;
	size_t			 i;

	for (i = 0; i < GROUP_BUCKETS; i++) {
		for (e = group_tab[i]; e != NULL; e = next) {
			next = e->next;
			free(e->ids);
			free(e);
		}
		group_tab[i] = NULL;
	}
}

/* Free the cache and disable it at exit. */
void
group_fini(void)
{
	pthread_mutex_lock(&group_mu);
	group_flush_locked();
	group_valid = 0;
	pthread_mutex_unlock(&group_mu);
}

/* Forget everything; see relay.h. */
void
group_flush(void)
{
	pthread_mutex_lock(&group_mu);
	group_flush_locked();
	pthread_mutex_unlock(&group_mu);
}

/* Enable or disable the cache; see relay.h. */
void
group_set_valid(int v)
{
	pthread_mutex_lock(&group_mu);
	group_valid = v;
	if (!v)
		group_flush_locked();
	pthread_mutex_unlock(&group_mu);
}

static int
group_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Member ids, loading on the listener's connection; see relay.h. */
int
group_members(int64_t gid, PGconn *pg, int64_t **idsp, size_t *np)
{
	struct group_entry	*e;
	PGresult		*res;
	const char		*v[1];
	char			 g[24];
	int64_t			*ids = NULL;
	size_t			 n = 0, i;

	*idsp = NULL;
	*np = 0;
	pthread_mutex_lock(&group_mu);
	if ((e = group_find_locked(gid)) != NULL) {
		e->used_ms = util_mono_ms();
		if (e->n > 0 && (ids = malloc(e->n * sizeof(*ids))) == NULL) {
			pthread_mutex_unlock(&group_mu);
			return -1;
		}
		if (e->n > 0)
			memcpy(ids, e->ids, e->n * sizeof(*ids));
		*idsp = ids;
		*np = e->n;
		pthread_mutex_unlock(&group_mu);
		return 0;
	}
	pthread_mutex_unlock(&group_mu);

	snprintf(g, sizeof(g), "%lld", (long long)gid);
	v[0] = g;
	res = PQexecParams(pg, "SELECT parley.group_member_ids($1::bigint)",
	    1, NULL, v, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warnx("group %lld: members: %s", (long long)gid,
		    PQresultErrorMessage(res));
		PQclear(res);
		return -1;
	}
	n = (size_t)PQntuples(res);
	if (n > 0 && (ids = malloc(n * sizeof(*ids))) == NULL) {
		PQclear(res);
		return -1;
	}
	for (i = 0; i < n; i++)
		ids[i] = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
	PQclear(res);
	qsort(ids, n, sizeof(*ids), group_cmp);

	pthread_mutex_lock(&group_mu);
	if (group_valid && group_find_locked(gid) == NULL &&
	    (e = calloc(1, sizeof(*e))) != NULL) {
		e->gid = gid;
		e->n = e->cap = n;
		e->used_ms = util_mono_ms();
		if (n > 0 && (e->ids = malloc(n * sizeof(*ids))) == NULL) {
			free(e);
		} else {
			if (n > 0)
				memcpy(e->ids, ids, n * sizeof(*ids));
			e->next = group_tab[group_bucket(gid)];
			group_tab[group_bucket(gid)] = e;
		}
	}
	pthread_mutex_unlock(&group_mu);
	*idsp = ids;
	*np = n;
	return 0;
}

/* A parley_member notification; see relay.h. */
void
group_notify(const char *op, int64_t gid, int64_t uid)
{
	struct group_entry	*e;
	ssize_t			 at;
	size_t			 pos;

	pthread_mutex_lock(&group_mu);
	if ((e = group_find_locked(gid)) == NULL)
		goto done;
	at = group_search(e, uid);
	if (strcmp(op, "add") == 0 && at < 0) {
		pos = (size_t)(-at - 1);
		if (e->n == e->cap) {
			size_t cap = e->cap ? e->cap * 2 : 8;
			int64_t *nv = realloc(e->ids, cap * sizeof(*nv));

			if (nv == NULL) {
				/* Cannot track it: forget the group instead. */
				e->n = 0;
				goto drop;
			}
			e->ids = nv;
			e->cap = cap;
		}
		memmove(e->ids + pos + 1, e->ids + pos,
		    (e->n - pos) * sizeof(*e->ids));
		e->ids[pos] = uid;
		e->n++;
	} else if (strcmp(op, "remove") == 0 && at >= 0) {
		memmove(e->ids + at, e->ids + at + 1,
		    (e->n - (size_t)at - 1) * sizeof(*e->ids));
		e->n--;
	}
	goto done;
drop:
	{
		struct group_entry **pp = &group_tab[group_bucket(gid)];

		while (*pp != e)
			pp = &(*pp)->next;
		*pp = e->next;
		free(e->ids);
		free(e);
	}
done:
	pthread_mutex_unlock(&group_mu);
}

/* Forget groups unused for max_idle_ms (listener, now and then). */
void
group_prune(int64_t max_idle_ms)
{
	struct group_entry	**pp, *e;
	int64_t			  now = util_mono_ms();
	size_t			  i;

	pthread_mutex_lock(&group_mu);
	for (i = 0; i < GROUP_BUCKETS; i++) {
		pp = &group_tab[i];
		while ((e = *pp) != NULL) {
			if (now - e->used_ms > max_idle_ms) {
				*pp = e->next;
				free(e->ids);
				free(e);
			} else {
				pp = &e->next;
			}
		}
	}
	pthread_mutex_unlock(&group_mu);
}
