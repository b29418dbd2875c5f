/*
 * fuzz_cookie.c: libFuzzer target for token-fcgi/cookie.c, the Cookie
 * header parser behind every GET session, POST token and POST logout.
 *
 * Input: "NAME\nHEADER".  When the first line is a valid cookie name it is
 * the name looked for; otherwise the name is parley_session and the whole
 * input is the header.  cookie_find runs with value buffers of several
 * exact sizes (so ASan sees any overrun), cookie_hash on top of it.
 * Oracles: a found value is 1..256 cookie-octets, fits its buffer, is the
 * same whatever the buffer size (when it fits), occurs in the header, and a
 * found secret is exactly the base64url of 32 bytes.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "fuzz.h"
#include "token.h"

static int
fuzz_cookie_octet(unsigned char c)
{
	return c == 0x21 || (c >= 0x23 && c <= 0x2b) ||
	    (c >= 0x2d && c <= 0x3a) || (c >= 0x3c && c <= 0x5b) ||
	    (c >= 0x5d && c <= 0x7e);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t	 sizes[] = { 1, 2, 16, 44, COOKIE_MAX_VALUE + 1 };
	struct fuzz_in		 in = { data, size };
	enum cookie_result	 r, big;
	unsigned char		 hash[UTIL_SHA256_LEN], ref_hash[SHA256_DIGEST_LENGTH];
	char			*first, *header, *value, ref[COOKIE_MAX_VALUE + 1];
	char			 other[8];
	const char		*name;
	size_t			 i, vlen;

	first = fuzz_field(&in, '\n');
	if (first != NULL && in.p != NULL && cookie_name_ok(first)) {
		name = first;
		header = fuzz_field(&in, -1);
	} else {
		name = "parley_session";
		header = fuzz_strndup(data, size);
	}
	FUZZ_CHECK(cookie_name_ok(name));

	big = cookie_find(header, name, ref, sizeof(ref));
	if (big == COOKIE_FOUND) {
		vlen = strlen(ref);
		FUZZ_CHECK(vlen >= 1 && vlen <= COOKIE_MAX_VALUE);
		for (i = 0; i < vlen; i++)
			FUZZ_CHECK(fuzz_cookie_octet((unsigned char)ref[i]));
		FUZZ_CHECK(strstr(header, ref) != NULL);
	} else if (big == COOKIE_ABSENT)
		FUZZ_CHECK(ref[0] == '\0');

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		value = fuzz_malloc(sizes[i]);
		r = cookie_find(header, name, value, sizes[i]);
		if (r == COOKIE_FOUND) {
			FUZZ_CHECK(big == COOKIE_FOUND);
			FUZZ_CHECK(strlen(value) < sizes[i]);
			FUZZ_CHECK(strcmp(value, ref) == 0);
		} else if (big == COOKIE_FOUND)
			FUZZ_CHECK(r == COOKIE_INVALID && strlen(ref) >= sizes[i]);
		else
			FUZZ_CHECK(r == big);
		free(value);
	}
	FUZZ_CHECK(cookie_find(NULL, name, other, sizeof(other)) == COOKIE_ABSENT);

	r = cookie_hash(header, name, hash);
	FUZZ_CHECK(r == big);
	if (r == COOKIE_FOUND) {
		SHA256((const unsigned char *)ref, strlen(ref), ref_hash);
		FUZZ_CHECK(memcmp(hash, ref_hash, sizeof(ref_hash)) == 0);
	}

	free(first);
	free(header);
	return 0;
}
