/*
 * fuzz_jwt_oracle.h: the independent judge of the two JWT fuzz targets.
 *
 * Whenever jwtkey_verify says a token is good (or good but expired), this
 * re-checks it from scratch without any Parley code: the signature with
 * OpenSSL directly (HMAC, ECDSA over the raw R||S of RFC 7518 §3.4,
 * RSASSA-PKCS1-v1_5), the header's alg byte for byte, and every claim
 * against what jwtkey_verify reported.  A forged or mis-read token that
 * gets through is a crash, not a silent pass.  Header only.
 */
#ifndef PARLEY_FUZZ_JWT_ORACLE_H
#define PARLEY_FUZZ_JWT_ORACLE_H

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "fuzz.h"
#include "jwtkey.h"

/* A public key from PEM text, or abort. */
static __attribute__((unused)) EVP_PKEY *
fuzz_jwt_pubkey(const char *pem)
{
	BIO		*b = BIO_new_mem_buf(pem, -1);
	EVP_PKEY	*k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;

	BIO_free(b);
	if (k == NULL) {
		fprintf(stderr, "fuzz: bad test public key\n");
		abort();
	}
	return k;
}

/* HMAC-SHA256 of (msg, n) with the fuzz secret into mac[32]. */
static __attribute__((unused)) void
fuzz_jwt_hmac(const void *key, size_t keylen, const void *msg, size_t n,
    unsigned char mac[32])
{
	unsigned int	len = 32;

	if (HMAC(EVP_sha256(), key, (int)keylen, msg, n, mac, &len) == NULL ||
	    len != 32)
		abort();
}

/* Does sig verify over (msg, n) for alg with pkey (or the HS secret)? */
static int
fuzz_jwt_sig_ok(enum jwtkey_alg alg, EVP_PKEY *pkey, const char *msg,
    size_t n, const unsigned char *sig, int siglen)
{
	unsigned char	 mac[32], *der = NULL;
	EVP_MD_CTX	*md;
	ECDSA_SIG	*es;
	BIGNUM		*r, *s;
	int		 derlen, ok = 0;

	if (alg == JWTKEY_HS256) {
		fuzz_jwt_hmac(FUZZ_HS_SECRET, strlen(FUZZ_HS_SECRET), msg, n, mac);
		return siglen == 32 && CRYPTO_memcmp(mac, sig, 32) == 0;
	}
	if (alg == JWTKEY_ES256) {
		if (siglen != 64)
			return 0;
		es = ECDSA_SIG_new();
		r = BN_bin2bn(sig, 32, NULL);
		s = BN_bin2bn(sig + 32, 32, NULL);
		if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s))
			abort();
		derlen = i2d_ECDSA_SIG(es, &der);
		ECDSA_SIG_free(es);
		if (derlen <= 0)
			abort();
		sig = der;
		siglen = derlen;
	}
	if ((md = EVP_MD_CTX_new()) == NULL)
		abort();
	ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
	    EVP_DigestVerify(md, sig, (size_t)siglen,
	    (const unsigned char *)msg, n) == 1;
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	return ok;
}

/* A base64url segment as a JSON object (duplicates refused), or NULL. */
static json_t *
fuzz_jwt_segment(const char *s, size_t n)
{
	unsigned char	*buf = fuzz_malloc(n * 3 / 4 + 3);
	json_t		*j = NULL;
	int		 len;

	if ((len = fuzz_b64url_decode(s, n, buf)) >= 0)
		j = json_loadb((const char *)buf, (size_t)len,
		    JSON_REJECT_DUPLICATES, NULL);
	free(buf);
	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

/* A time claim as the oracle reads it: absent (1, *v = 0) or an integer. */
static int
fuzz_jwt_time(const json_t *claims, const char *name, int64_t *v)
{
	const json_t	*t = json_object_get(claims, name);

	*v = 0;
	if (t == NULL)
		return 1;
	FUZZ_CHECK(json_is_integer(t));
	*v = json_integer_value(t);
	return 0;
}

/*
 * Judge one verdict of jwtkey_verify(ks, fuzz_params, token, FUZZ_NOW).
 * algname is the set's algorithm; pkey its public key (NULL for HS256).
 */
static __attribute__((unused)) void
fuzz_jwt_judge(const struct jwtkeyset *ks, EVP_PKEY *pkey, const char *token,
    enum jwtkey_result r, const struct jwtkey_claims *cl, const char *reason)
{
	static const struct jwtkey_claims zero;
	static const char *const algnames[] = { "", "HS256", "RS256", "ES256" };
	enum jwtkey_alg	 alg = jwtkey_alg(ks);
	const char	*d1, *d2, *s;
	const json_t	*v, *a;
	json_t		*hdr, *claims;
	unsigned char	*sig;
	int64_t		 sub, iat, nbf, exp;
	size_t		 n = strlen(token), i;
	int		 siglen, found;

	FUZZ_CHECK(reason != NULL && *reason != '\0');
	FUZZ_CHECK(r == JWTKEY_OK || r == JWTKEY_EXPIRED || r == JWTKEY_INVALID);
	if (r == JWTKEY_INVALID) {
		FUZZ_CHECK(memcmp(cl, &zero, sizeof(zero)) == 0);
		return;
	}

	/* The shape: at most 8 KiB, three segments. */
	FUZZ_CHECK(n <= JWTKEY_MAX_TOKEN);
	d1 = strchr(token, '.');
	FUZZ_CHECK(d1 != NULL);
	d2 = strchr(d1 + 1, '.');
	FUZZ_CHECK(d2 != NULL && strchr(d2 + 1, '.') == NULL);

	/* The signature, by OpenSSL alone. */
	sig = fuzz_malloc(n * 3 / 4 + 3);
	siglen = fuzz_b64url_decode(d2 + 1, strlen(d2 + 1), sig);
	FUZZ_CHECK(siglen > 0);
	FUZZ_CHECK(fuzz_jwt_sig_ok(alg, pkey, token, (size_t)(d2 - token), sig,
	    siglen));
	free(sig);

	/* The header: our algorithm, spelled exactly so. */
	hdr = fuzz_jwt_segment(token, (size_t)(d1 - token));
	FUZZ_CHECK(hdr != NULL);
	v = json_object_get(hdr, "alg");
	FUZZ_CHECK(json_is_string(v) && strcmp(json_string_value(v),
	    algnames[alg]) == 0);
	FUZZ_CHECK(json_object_get(hdr, "crit") == NULL);
	v = json_object_get(hdr, "typ");
	FUZZ_CHECK(v == NULL || (json_is_string(v) &&
	    strcmp(json_string_value(v), "JWT") == 0));
	v = json_object_get(hdr, "kid");
	FUZZ_CHECK(v == NULL || (json_is_string(v) &&
	    strcmp(json_string_value(v), jwtkey_kid(ks)) == 0));
	json_decref(hdr);

	/* The claims, each as reported. */
	claims = fuzz_jwt_segment(d1 + 1, (size_t)(d2 - d1 - 1));
	FUZZ_CHECK(claims != NULL);
	v = json_object_get(claims, "iss");
	FUZZ_CHECK(json_is_string(v) && strcmp(json_string_value(v),
	    fuzz_params.issuer) == 0);
	v = json_object_get(claims, "aud");
	found = json_is_string(v) && strcmp(json_string_value(v),
	    fuzz_params.audience) == 0;
	if (json_is_array(v))
		json_array_foreach(v, i, a)
			found |= json_is_string(a) && strcmp(json_string_value(a),
			    fuzz_params.audience) == 0;
	FUZZ_CHECK(found);
	v = json_object_get(claims, "sub");
	FUZZ_CHECK(json_is_string(v));
	s = json_string_value(v);
	FUZZ_CHECK(s[0] >= '1' && s[0] <= '9' &&
	    strspn(s, "0123456789") == strlen(s) && strlen(s) <= 19);
	sub = strtoll(s, NULL, 10);
	FUZZ_CHECK(sub > 0 && sub == cl->sub);
	v = json_object_get(claims, "sid");
	FUZZ_CHECK(json_is_string(v) && json_string_length(v) > 0 &&
	    json_string_length(v) < sizeof(cl->sid) &&
	    strcmp(json_string_value(v), cl->sid) == 0);
	v = json_object_get(claims, "name");
	FUZZ_CHECK(v == NULL ? cl->name[0] == '\0' : (json_is_string(v) &&
	    strcmp(json_string_value(v), cl->name) == 0));
	v = json_object_get(claims, "jti");
	FUZZ_CHECK(v == NULL ? cl->jti[0] == '\0' : (json_is_string(v) &&
	    strcmp(json_string_value(v), cl->jti) == 0));
	FUZZ_CHECK(fuzz_jwt_time(claims, "exp", &exp) == 0 && exp == cl->exp);
	if (fuzz_jwt_time(claims, "nbf", &nbf) == 0)
		FUZZ_CHECK(nbf <= FUZZ_NOW + FUZZ_LEEWAY);
	if (fuzz_jwt_time(claims, "iat", &iat) == 0)
		FUZZ_CHECK(iat <= FUZZ_NOW + FUZZ_LEEWAY);
	FUZZ_CHECK(nbf == cl->nbf && iat == cl->iat);
	if (r == JWTKEY_OK)
		FUZZ_CHECK(exp > FUZZ_NOW - FUZZ_LEEWAY);
	else
		FUZZ_CHECK(exp <= FUZZ_NOW - FUZZ_LEEWAY);
	json_decref(claims);
}

#endif
