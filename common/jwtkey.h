/*
 * jwtkey.h: relay-token keys, minting and verification.
 *
 * libjwt 1.10 checks no claims, accepts algorithms other than the one asked
 * for (and "hs256" for HS256), keeps the last of duplicated members, takes
 * tokens of any size, and with an empty key accepts "alg":"none".  So this
 * module caps the token size before anything else, pins the algorithm on the
 * raw header, parses header and claims itself with duplicates rejected and
 * nesting bounded, checks every claim and its JSON type, and only then lets
 * libjwt check the signature, always with a real key.
 *
 * Keys: HS256 (a secret file of >= 32 bytes), RS256 and ES256 (PEM; private
 * for minting, public or private for verifying).  A key file readable by
 * other users is refused.  The kid is derived from the key unless given:
 * the RFC 7638 thumbprint of the public key, or for HMAC a truncated
 * SHA-256 of the secret, so minting and verifying sides agree by themselves.
 *
 * A keyset is immutable after loading and may be shared by threads.
 */
#ifndef PARLEY_JWTKEY_H
#define PARLEY_JWTKEY_H

#include <stddef.h>
#include <stdint.h>

#define JWTKEY_MAX_TOKEN	8192	/* bytes; longer tokens are refused unread */
#define JWTKEY_MAX_KEYS		8

enum jwtkey_alg {
	JWTKEY_HS256 = 1,
	JWTKEY_RS256,
	JWTKEY_ES256
};

struct jwtkeyset;	/* opaque */

/*
 * Load keys for `alg` ("HS256", "RS256", "ES256": exact spelling) from a
 * comma-separated list of files; the first one signs.  want_private: the
 * token service needs a private key for RS256/ES256.  kid: NULL to derive.
 * Returns the set, or NULL with err set to a one-line reason ("key file
 * /etc/parley/jwt.key is readable by other users").
 */
struct jwtkeyset *jwtkey_load(const char *alg, const char *files,
	    const char *kid, int want_private, char *err, size_t errlen);
void	jwtkey_free(struct jwtkeyset *);

enum jwtkey_alg jwtkey_alg(const struct jwtkeyset *);
const char *jwtkey_kid(const struct jwtkeyset *);	/* of the signing key */

struct jwtkey_params {
	const char	*issuer;	/* "parley" */
	const char	*audience;	/* "parley-relay" */
	int64_t		 ttl_s;		/* exp = iat + ttl_s */
	int64_t		 leeway_s;	/* tolerated clock skew for nbf/iat/exp */
};

struct jwtkey_claims {
	int64_t	 sub;		/* user id; "sub" is its decimal string */
	char	 name[256];	/* display name (UTF-8) */
	char	 sid[128];	/* session id, not the cookie secret */
	char	 jti[64];
	int64_t	 iat, nbf, exp;	/* epoch seconds */
};

/*
 * Mint a token for (sub, name, sid) at time now_s.  Returns a malloc'd
 * string the caller frees, with *exp set, or NULL with err set.
 */
char	*jwtkey_mint(const struct jwtkeyset *, const struct jwtkey_params *,
	    int64_t sub, const char *name, const char *sid, int64_t now_s,
	    int64_t *exp, char *err, size_t errlen);

enum jwtkey_result {
	JWTKEY_OK = 0,
	JWTKEY_INVALID = -1,	/* signature, alg, iss, aud, type, size ... */
	JWTKEY_EXPIRED = -2	/* well-formed and signed, but exp has passed */
};

/*
 * Verify `token` at time now_s and fill *claims.  Returns JWTKEY_OK,
 * JWTKEY_EXPIRED or JWTKEY_INVALID with *reason set to a static string
 * safe to log and to send to the client ("bad signature", "alg mismatch").
 * Expiry is reported only for a token whose signature verified.
 */
enum jwtkey_result jwtkey_verify(const struct jwtkeyset *,
	    const struct jwtkey_params *, const char *token, int64_t now_s,
	    struct jwtkey_claims *, const char **reason);

/*
 * The JWK Set (RFC 7517) of the public keys, as a malloc'd JSON string, or
 * NULL for HMAC keys (nothing public to publish).
 */
char	*jwtkey_jwks(const struct jwtkeyset *);

#endif
