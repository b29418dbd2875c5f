/*
 * fuzz_jwtkey_verify.c: libFuzzer target for jwtkey_verify on raw token
 * text, as the relay receives it from a client.
 *
 * Each input is verified against three key sets built once: HS256 with the
 * fixed test secret, ES256 and RS256 with the test public keys (fuzz.h), at
 * the fixed time FUZZ_NOW.  Seeds in corpus/jwtkey_verify are real tokens
 * signed with those keys plus one token per defect, so mutations start
 * next to every check.  Every verdict other than "invalid" is re-judged by
 * fuzz_jwt_oracle.h with OpenSSL alone: a token that passes jwtkey_verify
 * without a valid signature over exactly our algorithm, or with claims
 * other than the ones reported, aborts.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_jwt_oracle.h"
#include "jwtkey.h"

static struct jwtkeyset	*fuzz_verify_hs, *fuzz_verify_es, *fuzz_verify_rs;
static EVP_PKEY		*fuzz_verify_es_pub, *fuzz_verify_rs_pub;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_verify_hs = fuzz_keyset("HS256", FUZZ_HS_SECRET,
	    strlen(FUZZ_HS_SECRET));
	fuzz_verify_es = fuzz_keyset("ES256", FUZZ_ES256_PUB,
	    strlen(FUZZ_ES256_PUB));
	fuzz_verify_rs = fuzz_keyset("RS256", FUZZ_RS256_PUB,
	    strlen(FUZZ_RS256_PUB));
	fuzz_verify_es_pub = fuzz_jwt_pubkey(FUZZ_ES256_PUB);
	fuzz_verify_rs_pub = fuzz_jwt_pubkey(FUZZ_RS256_PUB);
	return 0;
}

static void
fuzz_verify_one(const struct jwtkeyset *ks, EVP_PKEY *pub, const char *token)
{
	struct jwtkey_claims	 cl;
	const char		*reason = NULL;
	enum jwtkey_result	 r;

	memset(&cl, 0xa5, sizeof(cl));	/* verify must set every byte */
	r = jwtkey_verify(ks, &fuzz_params, token, FUZZ_NOW, &cl, &reason);
	fuzz_jwt_judge(ks, pub, token, r, &cl, reason);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*token = fuzz_strndup(data, size);

	fuzz_verify_one(fuzz_verify_hs, NULL, token);
	fuzz_verify_one(fuzz_verify_es, fuzz_verify_es_pub, token);
	fuzz_verify_one(fuzz_verify_rs, fuzz_verify_rs_pub, token);
	free(token);
	return 0;
}
