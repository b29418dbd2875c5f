/*
 * load_hist.c: a log-bucketed latency histogram in the manner of HdrHistogram:
 * values below 64 ns have a bucket each, then every power of two is split into
 * 64 linear sub-buckets, so a reported quantile is within 1/64 of the true
 * value.  Recording is a few instructions and never allocates.
 */
#include "config.h"

#include <string.h>

#include "load.h"

#define SUB		(1u << LOAD_HIST_SUB_BITS)

/* Empty histogram; see load.h. */
void
load_hist_init(struct load_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

static unsigned
load_hist_index(uint64_t v)
{
	unsigned	e;

	if (v < SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);	/* e >= SUB_BITS */
	return ((e - LOAD_HIST_SUB_BITS + 1) << LOAD_HIST_SUB_BITS) +
	    (unsigned)((v >> (e - LOAD_HIST_SUB_BITS)) - SUB);
}

/* The largest value that falls into bucket i. */
static uint64_t
load_hist_upper(unsigned i)
{
	unsigned	e, m;

	if (i < SUB)
		return i;
	e = (i >> LOAD_HIST_SUB_BITS) + LOAD_HIST_SUB_BITS - 1;
	m = (i & (SUB - 1)) + SUB;
	if (e - LOAD_HIST_SUB_BITS >= 57)
		return UINT64_MAX;
	return (((uint64_t)m + 1) << (e - LOAD_HIST_SUB_BITS)) - 1;
}

/* Record a value; see load.h. */
void
load_hist_add(struct load_hist *h, int64_t ns)
{
	uint64_t	v = ns < 0 ? 0 : (uint64_t)ns;

	h->b[load_hist_index(v)]++;
	h->count++;
	h->sum += (double)v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

/* Merge; see load.h. */
void
load_hist_merge(struct load_hist *dst, const struct load_hist *src)
{
	size_t	i;

	if (src->count == 0)
		return;
	for (i = 0; i < LOAD_HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

/* Quantile; see load.h. */
uint64_t
load_hist_quantile(const struct load_hist *h, double q)
{
	uint64_t	want, seen = 0, up;
	unsigned	i;

	if (h->count == 0)
		return 0;
	if (q <= 0)
		return h->min;
	if (q >= 1)
		return h->max;
	want = (uint64_t)(q * (double)h->count + 0.999999);
	if (want == 0)
		want = 1;
	for (i = 0; i < LOAD_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			up = load_hist_upper(i);
			return up > h->max ? h->max : up;
		}
	}
	return h->max;
}
