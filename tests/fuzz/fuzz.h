/*
 * fuzz.h: what every fuzz target shares: the fixed clock, issuer and keys of
 * the JWT targets, input splitting, an invariant check that aborts (so
 * libFuzzer and the corpus replay both report it as a crash), and a small
 * base64url decoder of its own so that oracles do not trust the code under
 * test.  Header only; each target includes it once.
 *
 * The keys below are test keys published with the source: they sign the
 * seed tokens in corpus/ (see mkcorpus.mjs) and nothing else.
 */
#ifndef PARLEY_FUZZ_H
#define PARLEY_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jwtkey.h"

/* libFuzzer's entry points (standalone.c calls them the same way). */
int	LLVMFuzzerInitialize(int *argc, char ***argv);
int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW	1767225600LL	/* 2026-01-01T00:00:00Z */
#define FUZZ_LEEWAY	30

/* HS256 secret of the seed tokens (>= 32 bytes, as jwtkey_load wants). */
#define FUZZ_HS_SECRET	"parley-fuzz-hs256-secret-0123456789abcdef"

/* Public halves of the ES256 and RS256 test keys (private: mkcorpus.mjs). */
#define FUZZ_ES256_PUB \
	"-----BEGIN PUBLIC KEY-----\n" \
	"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEi1sJw1+jr2DfqJAjW28QuDlvCQB1\n" \
	"+jpY0MevbUt6+p4OptXWksjKozQAG7oBMVx4PD6/ZDOak/ZryWqHoW/Jjw==\n" \
	"-----END PUBLIC KEY-----\n"
#define FUZZ_RS256_PUB \
	"-----BEGIN PUBLIC KEY-----\n" \
	"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuzEis5SUg8ibJdgoxBRQ\n" \
	"wcqCZMkVEyudRF7m895rxlfL985tVzro8RdlFNRcaf7YWppo7GTq5aXHJgGEJfFe\n" \
	"s4txqJcWA1kjBtO8SKoZIDTSdEB3KfG7bk+8yHiLHbp2hBdA4fnkzJAdi8EnctVY\n" \
	"bpeeBk8e5Bb+3R+fKCv8nfj/HxIBJcvdAvOaOUIZJWBeDTPXc2c7dj79fYFrvH9u\n" \
	"C0NBy6vG0JVP34M3owPq6IuyeOyePtsnwkiII/HmY5M+qwpyTpP4q1h6CMQenFMd\n" \
	"oobDm1aqeQev2wEFT1hrVo4QMbHA5CS5fq0IK8MJZM5VUh6Ov1jH6vto4kyp/zKs\n" \
	"QwIDAQAB\n" \
	"-----END PUBLIC KEY-----\n"

static const struct jwtkey_params fuzz_params = {
	.issuer = "parley", .audience = "parley-relay", .ttl_s = 300,
	.leeway_s = FUZZ_LEEWAY,
};

/* An invariant broke: say which, then abort so the input is kept. */
#define FUZZ_CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "fuzz: invariant failed at %s:%d: %s\n",	\
		    __FILE__, __LINE__, #cond);				\
		abort();						\
	}								\
} while (0)

/* Allocation that cannot fail quietly (a fuzz target has no error path). */
static __attribute__((unused)) void *
fuzz_malloc(size_t n)
{
	void	*p = malloc(n ? n : 1);

	if (p == NULL) {
		fprintf(stderr, "fuzz: out of memory\n");
		abort();
	}
	return p;
}

/*
 * A NUL-terminated copy of (data, n) in a buffer of exactly n + 1 bytes, so
 * that AddressSanitizer sees any read past the end.
 */
static __attribute__((unused)) char *
fuzz_strndup(const void *data, size_t n)
{
	char	*s = fuzz_malloc(n + 1);

	if (n > 0)
		memcpy(s, data, n);
	s[n] = '\0';
	return s;
}

/* An input cursor for targets that read several fields. */
struct fuzz_in {
	const uint8_t	*p;
	size_t		 n;
};

/*
 * The next field up to `sep` (not included), as a new NUL-terminated
 * string, or NULL when the input is used up.  The last field runs to the
 * end of the input.
 */
static __attribute__((unused)) char *
fuzz_field(struct fuzz_in *in, int sep)
{
	const uint8_t	*e;
	size_t		 len;
	char		*s;

	if (in->p == NULL)
		return NULL;
	e = memchr(in->p, sep, in->n);
	len = e ? (size_t)(e - in->p) : in->n;
	s = fuzz_strndup(in->p, len);
	if (e != NULL) {
		in->n -= len + 1;
		in->p = e + 1;
	} else {
		in->p = NULL;
		in->n = 0;
	}
	return s;
}

/*
 * Lenient base64url decoding for oracles (independent of util.c): returns
 * the length, or -1 for a character outside the alphabet or a length of
 * 4k + 1.  out needs n * 3 / 4 + 3 bytes.
 */
static __attribute__((unused)) int
fuzz_b64url_decode(const char *in, size_t n, unsigned char *out)
{
	static const char alpha[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint32_t	acc = 0;
	size_t		i;
	int		bits = 0, o = 0;
	const char	*c;

	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		if (in[i] == '\0' || (c = strchr(alpha, in[i])) == NULL)
			return -1;
		acc = acc << 6 | (uint32_t)(c - alpha);
		if ((bits += 6) >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return o;
}

/* Base64url without padding into out (4 * ceil(n / 3) + 1 bytes). */
static __attribute__((unused)) size_t
fuzz_b64url_encode(const void *in, size_t n, char *out)
{
	static const char alpha[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char	*p = in;
	uint32_t		 acc = 0;
	size_t			 i, o = 0;
	int			 bits = 0;

	for (i = 0; i < n; i++) {
		acc = acc << 8 | p[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = alpha[acc >> bits & 63];
		}
		acc &= (1u << bits) - 1;
	}
	if (bits > 0)
		out[o++] = alpha[acc << (6 - bits) & 63];
	out[o] = '\0';
	return o;
}

/*
 * A key set from key material: written to a private temporary file (mode
 * 0600, as jwtkey_load insists), loaded, and the file removed at once.
 * Aborts on failure: a target without its keys would fuzz nothing.
 */
static __attribute__((unused)) struct jwtkeyset *
fuzz_keyset(const char *alg, const void *key, size_t len)
{
	struct jwtkeyset	*ks;
	const char		*tmp = getenv("TMPDIR");
	char			 dir[4096], path[4200], err[256];
	FILE			*fp;

	snprintf(dir, sizeof(dir), "%s/parley-fuzz.XXXXXX",
	    tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("fuzz: mkdtemp");
		abort();
	}
	snprintf(path, sizeof(path), "%s/key", dir);
	if ((fp = fopen(path, "w")) == NULL || fchmod(fileno(fp), 0600) < 0 ||
	    fwrite(key, 1, len, fp) != len || fclose(fp) != 0) {
		perror("fuzz: key file");
		abort();
	}
	ks = jwtkey_load(alg, path, NULL, 0, err, sizeof(err));
	unlink(path);
	rmdir(dir);
	if (ks == NULL) {
		fprintf(stderr, "fuzz: cannot load the %s test key: %s\n", alg, err);
		abort();
	}
	return ks;
}

#endif
