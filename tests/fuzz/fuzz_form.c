/*
 * fuzz_form.c: libFuzzer target for token-fcgi/form.c, the login body
 * parsers: form_credentials (JSON or urlencoded), form_parse and
 * form_is_type.
 *
 * Input: "CONTENT-TYPE\nBODY", where BODY runs to the end and may hold any
 * byte.  The body is handed over in a buffer of exactly its length (no
 * terminating NUL), so a parser that reads one byte too far is caught.
 * Oracles: accepted credentials are 1..64 and 1..1024 bytes of valid UTF-8
 * without NUL and their lengths match; every pair form_parse reports is
 * valid UTF-8 without NUL; a callback that stops the parse stops it.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "token.h"

struct fuzz_form_seen {
	int	pairs;
	int	stop_at;	/* return 7 from this pair on; -1: never */
};

static int
fuzz_form_cb(void *arg, const char *name, const char *value, size_t vlen)
{
	struct fuzz_form_seen	*seen = arg;

	FUZZ_CHECK(strlen(value) == vlen);
	FUZZ_CHECK(util_utf8_valid(name, strlen(name)));
	FUZZ_CHECK(util_utf8_valid(value, vlen));
	if (seen->stop_at >= 0 && seen->pairs >= seen->stop_at)
		return 7;
	seen->pairs++;
	return 0;
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
	struct fuzz_in		 in = { data, size };
	struct credentials	 cred;
	struct fuzz_form_seen	 seen = { 0, -1 };
	const char		*reason = NULL;
	char			*ctype, *body;
	size_t			 blen;
	int			 r;

	ctype = fuzz_field(&in, '\n');
	blen = in.p ? in.n : 0;
	body = fuzz_malloc(blen);
	if (blen > 0)
		memcpy(body, in.p, blen);

	r = form_credentials(ctype, body, blen, &cred, &reason);
	if (r == 0) {
		FUZZ_CHECK(form_is_type(ctype, "application/json") ||
		    form_is_type(ctype, "application/x-www-form-urlencoded"));
		FUZZ_CHECK(cred.ulen >= 1 && cred.ulen <= FORM_USERNAME_MAX);
		FUZZ_CHECK(cred.plen >= 1 && cred.plen <= FORM_PASSWORD_MAX);
		FUZZ_CHECK(strlen(cred.username) == cred.ulen);
		FUZZ_CHECK(strlen(cred.password) == cred.plen);
		FUZZ_CHECK(util_utf8_valid(cred.username, cred.ulen));
		FUZZ_CHECK(util_utf8_valid(cred.password, cred.plen));
	} else {
		FUZZ_CHECK(r == -1 && reason != NULL && *reason != '\0');
		FUZZ_CHECK(cred.username == NULL && cred.password == NULL);
	}
	form_credentials_clear(&cred);
	FUZZ_CHECK(cred.username == NULL && cred.password == NULL);

	/* Every pair, then a parse the callback cuts short. */
	r = form_parse(body, blen, fuzz_form_cb, &seen, &reason);
	FUZZ_CHECK(r == 0 || r == -1);
	if (r == 0 && seen.pairs > 0) {
		seen.stop_at = seen.pairs - 1;
		seen.pairs = 0;
		FUZZ_CHECK(form_parse(body, blen, fuzz_form_cb, &seen,
		    &reason) == 7);
	}

	(void)form_is_type(ctype, "application/json");
	free(body);
	free(ctype);
	return 0;
}
