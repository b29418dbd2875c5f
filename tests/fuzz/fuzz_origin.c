/*
 * fuzz_origin.c: libFuzzer target for common/origin.c, the CSRF check
 * of the POST routes: origin_canon, origin_allowed (Origin and Host come
 * from the client) and origin_list_parse (the allow-list setting).
 *
 * Input: "ALLOWED_ORIGINS\nORIGIN\nHOST[\nSCHEME]"; a missing line is an
 * absent header, a missing SCHEME (the request's: X-Forwarded-Proto,
 * HTTPS) is "http".  Oracles: canonical forms are fixed points and fit
 * their buffers exactly; "null" and unparsable Origins never pass; an
 * Origin passes an allow-list that holds its canonical form, and passes
 * the same-host rule only with the request's scheme, http or https.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "token.h"

#define FUZZ_ORIGIN_MAX	256	/* ORIGIN_MAX in common/origin.c */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	return 0;
}

/* origin_canon into a buffer of exactly outlen bytes; 0 or -1. */
static int
fuzz_origin_canon(const char *in, size_t outlen, char *copy, size_t copylen)
{
	char	*out = fuzz_malloc(outlen);
	int	 r = origin_canon(in, out, outlen);

	if (r == 0) {
		FUZZ_CHECK(strlen(out) < outlen);
		if (copy != NULL) {
			FUZZ_CHECK(strlen(out) < copylen);
			memcpy(copy, out, strlen(out) + 1);
		}
	}
	free(out);
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in		 in = { data, size };
	struct origin_list	 list = { NULL, 0 }, one;
	char			*spec, *origin, *host, *sch, canon[512];
	char			 again[512];
	const char		*scheme;
	char			*listed[1];
	char			 err[512];
	size_t			 i, n;
	int			 allowed, r;

	spec = fuzz_field(&in, '\n');
	origin = fuzz_field(&in, '\n');
	host = fuzz_field(&in, '\n');
	sch = fuzz_field(&in, '\n');
	scheme = sch != NULL ? sch : "http";

	err[0] = '\0';
	if (origin_list_parse(spec, &list, err, sizeof(err)) == 0) {
		for (i = 0; i < list.n; i++) {
			FUZZ_CHECK(fuzz_origin_canon(list.v[i], 512, again,
			    sizeof(again)) == 0);
			FUZZ_CHECK(strcmp(again, list.v[i]) == 0);
		}
	} else
		FUZZ_CHECK(err[0] != '\0' && list.n == 0 && list.v == NULL);

	if (origin != NULL &&
	    fuzz_origin_canon(origin, 512, canon, sizeof(canon)) == 0) {
		n = strlen(canon);
		/* A fixed point, and exactly n + 1 bytes are enough. */
		FUZZ_CHECK(fuzz_origin_canon(canon, n + 1, again,
		    sizeof(again)) == 0 && strcmp(canon, again) == 0);
		FUZZ_CHECK(fuzz_origin_canon(origin, n + 1, NULL, 0) == 0);
		FUZZ_CHECK(fuzz_origin_canon(origin, n, NULL, 0) == -1);
		/*
		 * Listed means allowed, whatever the Host; origins longer than
		 * an allow-list entry can be (origin.c's ORIGIN_MAX) are
		 * refused, which fails closed.
		 */
		listed[0] = canon;
		one.v = listed;
		one.n = 1;
		FUZZ_CHECK(origin_allowed(&one, origin, host, scheme) ==
		    (n <= FUZZ_ORIGIN_MAX));
		FUZZ_CHECK(origin_allowed(&one, origin, NULL, NULL) ==
		    (n <= FUZZ_ORIGIN_MAX));
	}

	allowed = origin_allowed(&list, origin, host, scheme);
	FUZZ_CHECK(allowed == 0 || allowed == 1);
	if (origin == NULL)
		FUZZ_CHECK(allowed == 1);
	else if (allowed) {
		FUZZ_CHECK(strcasecmp(origin, "null") != 0);
		r = fuzz_origin_canon(origin, 512, canon, sizeof(canon));
		FUZZ_CHECK(r == 0);
		if (list.n > 0) {
			for (i = 0; i < list.n; i++)
				if (strcmp(list.v[i], canon) == 0)
					break;
			FUZZ_CHECK(i < list.n);
		} else {
			n = strlen(scheme);
			FUZZ_CHECK(strcmp(scheme, "http") == 0 ||
			    strcmp(scheme, "https") == 0);
			FUZZ_CHECK(strncmp(canon, scheme, n) == 0 &&
			    strncmp(canon + n, "://", 3) == 0);
		}
	}
	FUZZ_CHECK(origin_allowed(&list, "null", host, scheme) == 0);
	FUZZ_CHECK(origin_allowed(NULL, origin, host, scheme) == allowed ||
	    list.n > 0);
	/* One Origin, one scheme: never the same origin over both. */
	FUZZ_CHECK(origin == NULL ||
	    !(origin_allowed(NULL, origin, host, "http") &&
	    origin_allowed(NULL, origin, host, "https")));

	origin_list_free(&list);
	free(spec);
	free(origin);
	free(host);
	free(sch);
	return 0;
}
