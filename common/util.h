/*
 * util.h: small helpers both programs share: randomness, hashing, encodings,
 * clocks, and parsing of durations and sizes with units.
 *
 * Nothing here logs or exits; failures are reported by return value.
 */
#ifndef PARLEY_UTIL_H
#define PARLEY_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define UTIL_SHA256_LEN	32

/* Fill buf with n bytes from the kernel CSPRNG.  Returns 0 or -1. */
int	util_random(void *buf, size_t n);

/* SHA-256 of (buf, len) into out[32]. */
void	util_sha256(const void *buf, size_t len, unsigned char out[UTIL_SHA256_LEN]);

/*
 * Base64url without padding (RFC 4648 §5).  encode writes a NUL-terminated
 * string and needs outlen >= util_b64url_len(n) + 1; returns the length
 * written, or -1 if out is too small.  decode accepts no padding and no
 * characters outside the alphabet; returns the decoded length or -1.
 */
size_t	util_b64url_len(size_t n);
int	util_b64url_encode(const void *in, size_t n, char *out, size_t outlen);
int	util_b64url_decode(const char *in, size_t n, unsigned char *out, size_t outlen);

/* Lower-case hex of (in, n) into out (2n + 1 bytes). */
void	util_hex(const void *in, size_t n, char *out);

/* Clocks. */
int64_t	util_now_ms(void);		/* CLOCK_REALTIME, milliseconds */
int64_t	util_mono_ms(void);		/* CLOCK_MONOTONIC, milliseconds */
/* RFC 3339 UTC with milliseconds ("2026-11-26T10:00:00.123Z") into out[25]. */
void	util_rfc3339(int64_t epoch_ms, char out[25]);

/*
 * "300", "300s", "5m", "2h", "7d", "250ms" -> milliseconds.  A bare number
 * is seconds.  Returns 0, or -1 for anything else (negative, overflow,
 * trailing junk).
 */
int	util_parse_duration(const char *, int64_t *ms);
/* "65536", "64k", "1m", "2g" (powers of 1024) -> bytes.  Returns 0 or -1. */
int	util_parse_size(const char *, int64_t *bytes);
/* Decimal int64 with nothing else around it.  Returns 0 or -1. */
int	util_parse_int64(const char *, int64_t *);

/* Is (s, n) valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF)? */
int	util_utf8_valid(const void *s, size_t n);

/* Constant-time comparison; returns 0 when equal. */
int	util_ct_compare(const void *a, const void *b, size_t n);

/*
 * Format a one-line error into err (errlen bytes), the way every function of
 * common/ reports failure.  err may be NULL or errlen 0: then nothing.
 */
void	util_errf(char *err, size_t errlen, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

/* strlcpy semantics; returns strlen(src). */
size_t	util_strlcpy(char *dst, const char *src, size_t size);

#endif
