/*
 * jwks.c: GET jwks.json, the public half of an RS256/ES256 signing key as a
 * JWK Set (RFC 7517 §5), so a relay or any third party can verify tokens
 * without sharing a secret.  With HMAC there is nothing public: 404.
 * The set changes only when the key does, so caches may keep it briefly.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "token.h"

/* GET jwks.json. */
void
jwks_handle(struct request *req)
{
	struct reply	 r;
	char		*set;

	if (jwtkey_alg(req->conf->keys) == JWTKEY_HS256 ||
	    (set = jwtkey_jwks(req->conf->keys)) == NULL) {
		reply_error(req, 404, "not_found",
		    "no public keys: tokens are signed with a shared secret");
		return;
	}
	reply_init(&r, 200);
	r.cache_control = "public, max-age=300";
	reply_send(req, &r, "application/json", set, strlen(set));
	free(set);
}
