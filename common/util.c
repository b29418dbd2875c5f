/*
 * util.c: randomness, SHA-256, base64url, hex, clocks, RFC 3339 times,
 * durations and sizes with units, strict integers, UTF-8 validation.
 *
 * Pure functions over buffers: nothing here logs, allocates or exits.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/evp.h>

#include "util.h"

/* Fill buf from getrandom(2), looping over short reads and EINTR. */
int
util_random(void *buf, size_t n)
{
	unsigned char	*p = buf;
	ssize_t		 r;

	while (n > 0) {
		r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* SHA-256 through the EVP interface (one-shot). */
void
util_sha256(const void *buf, size_t len, unsigned char out[UTIL_SHA256_LEN])
{
	unsigned int	olen = UTIL_SHA256_LEN;

	if (EVP_Digest(buf, len, out, &olen, EVP_sha256(), NULL) != 1)
		memset(out, 0, UTIL_SHA256_LEN);	/* cannot happen in practice */
}

static const char util_b64_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Length of the unpadded base64url encoding of n bytes. */
size_t
util_b64url_len(size_t n)
{
	return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

/* Encode without padding; returns the length written or -1 if out is small. */
int
util_b64url_encode(const void *in, size_t n, char *out, size_t outlen)
{
	const unsigned char	*p = in;
	size_t			 need = util_b64url_len(n), i, o = 0;
	uint32_t		 v;

	if (need >= outlen || need > INT32_MAX)
		return -1;
	for (i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = util_b64_alpha[v >> 18 & 63];
		out[o++] = util_b64_alpha[v >> 12 & 63];
		out[o++] = util_b64_alpha[v >> 6 & 63];
		out[o++] = util_b64_alpha[v & 63];
	}
	if (n - i == 1) {
		v = (uint32_t)p[i] << 16;
		out[o++] = util_b64_alpha[v >> 18 & 63];
		out[o++] = util_b64_alpha[v >> 12 & 63];
	} else if (n - i == 2) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		out[o++] = util_b64_alpha[v >> 18 & 63];
		out[o++] = util_b64_alpha[v >> 12 & 63];
		out[o++] = util_b64_alpha[v >> 6 & 63];
	}
	out[o] = '\0';
	return (int)o;
}

static int
util_b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Strict decode: only the URL-safe alphabet, no padding, no whitespace, a
 * length that an encoder could have produced, and zero unused bits in the
 * last character (so every byte string has exactly one accepted encoding).
 */
int
util_b64url_decode(const char *in, size_t n, unsigned char *out, size_t outlen)
{
	size_t		 i, o = 0, need;
	uint32_t	 v = 0;
	int		 d, bits = 0;

	if (n % 4 == 1)
		return -1;
	need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
	if (need > outlen || need > INT32_MAX)
		return -1;
	for (i = 0; i < n; i++) {
		if ((d = util_b64_val((unsigned char)in[i])) < 0)
			return -1;
		v = v << 6 | (uint32_t)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(v >> bits);
			v &= (1u << bits) - 1;
		}
	}
	if (v != 0)	/* non-canonical trailing bits */
		return -1;
	return (int)o;
}

/* Lower-case hex; out must hold 2n + 1 bytes. */
void
util_hex(const void *in, size_t n, char *out)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*p = in;
	size_t			 i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Wall clock in milliseconds since the epoch. */
int64_t
util_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic clock in milliseconds (for timeouts and back-offs). */
int64_t
util_mono_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Write v (>= 0) as exactly n decimal digits, zero-padded. */
static void
util_put_digits(char *out, int v, int n)
{
	while (n-- > 0) {
		out[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ"; years outside 0..9999 are clamped. */
void
util_rfc3339(int64_t epoch_ms, char out[25])
{
	struct tm	tm;
	time_t		secs;
	int64_t		ms;

	/* Floor division so times before 1970 keep a positive fraction. */
	secs = (time_t)(epoch_ms / 1000);
	ms = epoch_ms % 1000;
	if (ms < 0) {
		ms += 1000;
		secs--;
	}
	if (gmtime_r(&secs, &tm) == NULL || tm.tm_year < -1900 ||
	    tm.tm_year > 9999 - 1900) {
		memcpy(out, epoch_ms < 0 ? "0000-01-01T00:00:00.000Z" :
		    "9999-12-31T23:59:59.999Z", 25);
		return;
	}
	util_put_digits(out, tm.tm_year + 1900, 4);
	out[4] = '-';
	util_put_digits(out + 5, tm.tm_mon + 1, 2);
	out[7] = '-';
	util_put_digits(out + 8, tm.tm_mday, 2);
	out[10] = 'T';
	util_put_digits(out + 11, tm.tm_hour, 2);
	out[13] = ':';
	util_put_digits(out + 14, tm.tm_min, 2);
	out[16] = ':';
	util_put_digits(out + 17, tm.tm_sec, 2);
	out[19] = '.';
	util_put_digits(out + 20, (int)ms, 3);
	out[23] = 'Z';
	out[24] = '\0';
}

/* Leading decimal digits of s into *v (no sign); returns chars used or -1. */
static int
util_digits(const char *s, int64_t *v)
{
	int64_t	acc = 0;
	int	i;

	for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
		if (__builtin_mul_overflow(acc, 10, &acc) ||
		    __builtin_add_overflow(acc, s[i] - '0', &acc))
			return -1;
		if (i > 64)
			return -1;
	}
	if (i == 0)
		return -1;
	*v = acc;
	return i;
}

/* Durations: a number with ms, s, m, h or d (case-insensitive); bare = s. */
int
util_parse_duration(const char *s, int64_t *out)
{
	static const struct { const char *unit; int64_t ms; } units[] = {
		{ "", 1000 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 }, { "d", 86400000 },
	};
	int64_t	v, r;
	size_t	i;
	int	n;

	if (s == NULL || (n = util_digits(s, &v)) < 0)
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(s + n, units[i].unit) != 0)
			continue;
		if (__builtin_mul_overflow(v, units[i].ms, &r))
			return -1;
		*out = r;
		return 0;
	}
	return -1;
}

/* Sizes: a number with k, m, g or t (powers of 1024, optional "b"/"ib"). */
int
util_parse_size(const char *s, int64_t *out)
{
	static const struct { const char *unit; int shift; } units[] = {
		{ "", 0 }, { "b", 0 },
		{ "k", 10 }, { "kb", 10 }, { "kib", 10 },
		{ "m", 20 }, { "mb", 20 }, { "mib", 20 },
		{ "g", 30 }, { "gb", 30 }, { "gib", 30 },
		{ "t", 40 }, { "tb", 40 }, { "tib", 40 },
	};
	int64_t	v, r;
	size_t	i;
	int	n;

	if (s == NULL || (n = util_digits(s, &v)) < 0)
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(s + n, units[i].unit) != 0)
			continue;
		if (__builtin_mul_overflow(v, (int64_t)1 << units[i].shift, &r))
			return -1;
		*out = r;
		return 0;
	}
	return -1;
}

/* Optional '-', then digits, nothing else; overflow is an error. */
int
util_parse_int64(const char *s, int64_t *out)
{
	uint64_t	acc = 0, lim;
	int		neg = 0, i;

	if (s == NULL)
		return -1;
	if (*s == '-') {
		neg = 1;
		s++;
	}
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (acc > (lim - d) / 10)
			return -1;
		acc = acc * 10 + d;
	}
	if (i == 0 || s[i] != '\0')
		return -1;
	if (neg)
		*out = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
	else
		*out = (int64_t)acc;
	return 0;
}

/*
 * UTF-8 per RFC 3629 §4: the second byte's range depends on the first, which
 * rules out overlong forms (C0, C1, E0 80-9F, F0 80-8F), surrogates
 * (ED A0-BF) and code points above U+10FFFF (F4 90-BF, F5-FF).
 */
int
util_utf8_valid(const void *buf, size_t n)
{
	const unsigned char	*s = buf;
	size_t			 i = 0;
	unsigned char		 c, lo, hi;
	int			 more, k;

	while (i < n) {
		c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		lo = 0x80;
		hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf)
			more = 1;
		else if (c >= 0xe0 && c <= 0xef) {
			more = 2;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			more = 3;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		} else
			return 0;
		if (n - i - 1 < (size_t)more)
			return 0;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return 0;
		for (k = 2; k <= more; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
		i += (size_t)more + 1;
	}
	return 1;
}

/* Compare without an early exit; 0 when equal. */
int
util_ct_compare(const void *a, const void *b, size_t n)
{
	const volatile unsigned char	*x = a, *y = b;
	unsigned char			 d = 0;
	size_t				 i;

	for (i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d != 0;
}

/* Copy with truncation; always NUL-terminates when size > 0. */
size_t
util_strlcpy(char *dst, const char *src, size_t size)
{
	size_t	len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

/* See util.h. */
void
util_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list	ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
