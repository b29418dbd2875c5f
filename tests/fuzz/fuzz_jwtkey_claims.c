/*
 * fuzz_jwtkey_claims.c: structure-aware libFuzzer target for the checks
 * jwtkey_verify makes behind the signature.
 *
 * A random string almost never carries a valid HMAC, so the raw target
 * (fuzz_jwtkey_verify.c) spends its time on the outer checks.  Here the
 * input is the JSON itself: "HEADER\0CLAIMS", or just CLAIMS (then the
 * header is the one jwtkey_mint writes: alg HS256, typ JWT, our kid).  The
 * target base64url-encodes both, signs them with the test secret, and
 * verifies, so every claim check (iss, aud, sub, sid, name, jti, iat, nbf,
 * exp, their JSON types, duplicates, nesting) is reached.  The verdict is
 * re-judged by fuzz_jwt_oracle.h.  Then the same token must be refused
 * with its signature damaged, with no signature, and when an HMAC made
 * with the public key text is presented to the ES256 and RS256 key sets
 * (algorithm confusion).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_jwt_oracle.h"
#include "jwtkey.h"

static struct jwtkeyset	*fuzz_claims_hs, *fuzz_claims_es, *fuzz_claims_rs;
static EVP_PKEY		*fuzz_claims_es_pub, *fuzz_claims_rs_pub;
static char		 fuzz_claims_hdr[256];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_claims_hs = fuzz_keyset("HS256", FUZZ_HS_SECRET,
	    strlen(FUZZ_HS_SECRET));
	fuzz_claims_es = fuzz_keyset("ES256", FUZZ_ES256_PUB,
	    strlen(FUZZ_ES256_PUB));
	fuzz_claims_rs = fuzz_keyset("RS256", FUZZ_RS256_PUB,
	    strlen(FUZZ_RS256_PUB));
	fuzz_claims_es_pub = fuzz_jwt_pubkey(FUZZ_ES256_PUB);
	fuzz_claims_rs_pub = fuzz_jwt_pubkey(FUZZ_RS256_PUB);
	snprintf(fuzz_claims_hdr, sizeof(fuzz_claims_hdr),
	    "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
	    jwtkey_kid(fuzz_claims_hs));
	return 0;
}

static enum jwtkey_result
fuzz_claims_verify(const struct jwtkeyset *ks, EVP_PKEY *pub,
    const char *token)
{
	struct jwtkey_claims	 cl;
	const char		*reason = NULL;
	enum jwtkey_result	 r;

	r = jwtkey_verify(ks, &fuzz_params, token, FUZZ_NOW, &cl, &reason);
	fuzz_jwt_judge(ks, pub, token, r, &cl, reason);
	return r;
}

/* token = signing input "." base64url(HMAC(key, signing input)). */
static void
fuzz_claims_sign(char *token, size_t inlen, const void *key, size_t keylen)
{
	unsigned char	mac[32];

	fuzz_jwt_hmac(key, keylen, token, inlen, mac);
	token[inlen] = '.';
	fuzz_b64url_encode(mac, sizeof(mac), token + inlen + 1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t	*nul = memchr(data, '\0', size);
	const void	*hdr, *claims;
	size_t		 hlen, clen, inlen, cap;
	char		*token;

	if (nul != NULL) {
		hdr = data;
		hlen = (size_t)(nul - data);
		claims = nul + 1;
		clen = size - hlen - 1;
	} else {
		hdr = fuzz_claims_hdr;
		hlen = strlen(fuzz_claims_hdr);
		claims = data;
		clen = size;
	}
	cap = (hlen + 2) / 3 * 4 + (clen + 2) / 3 * 4 + 64;
	token = fuzz_malloc(cap);
	inlen = fuzz_b64url_encode(hdr, hlen, token);
	token[inlen++] = '.';
	inlen += fuzz_b64url_encode(claims, clen, token + inlen);

	/* Signed properly: whatever the verdict, the oracle must agree. */
	fuzz_claims_sign(token, inlen, FUZZ_HS_SECRET, strlen(FUZZ_HS_SECRET));
	fuzz_claims_verify(fuzz_claims_hs, NULL, token);

	/*
	 * One bit of the signature's first character flipped: either another
	 * base64url digit (another MAC) or no digit at all.
	 */
	token[inlen + 1] ^= 0x01;
	FUZZ_CHECK(fuzz_claims_verify(fuzz_claims_hs, NULL, token) ==
	    JWTKEY_INVALID);

	/* No signature at all ("alg":"none" style). */
	token[inlen + 1] = '\0';
	FUZZ_CHECK(fuzz_claims_verify(fuzz_claims_hs, NULL, token) ==
	    JWTKEY_INVALID);
	token[inlen] = '\0';
	FUZZ_CHECK(fuzz_claims_verify(fuzz_claims_hs, NULL, token) ==
	    JWTKEY_INVALID);

	/* HMAC keyed with the public key text, presented to ES256 / RS256. */
	fuzz_claims_sign(token, inlen, FUZZ_ES256_PUB, strlen(FUZZ_ES256_PUB));
	FUZZ_CHECK(fuzz_claims_verify(fuzz_claims_es, fuzz_claims_es_pub,
	    token) == JWTKEY_INVALID);
	fuzz_claims_sign(token, inlen, FUZZ_RS256_PUB, strlen(FUZZ_RS256_PUB));
	FUZZ_CHECK(fuzz_claims_verify(fuzz_claims_rs, fuzz_claims_rs_pub,
	    token) == JWTKEY_INVALID);
	free(token);
	return 0;
}
