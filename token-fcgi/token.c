/*
 * token.c: POST token, the reason the service exists (PROTOCOL.md §1).
 *
 * A live session cookie buys a short-lived JWT for the relay: sub (user
 * id), name, sid (the session id, which the relay checks against the
 * database; never the cookie secret), signed by jwtkey with the current
 * key.  The answer must not be cached anywhere: Cache-Control: no-store
 * and, for HTTP/1.0 caches, Pragma: no-cache.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "token.h"

/* POST token. */
void
token_handle(struct request *req)
{
	unsigned char		 hash[UTIL_SHA256_LEN];
	struct store_user	 u;
	struct reply		 r;
	char			 err[256];
	char			*jwt = NULL;
	int64_t			 now, exp;
	json_t			*o;

	if (session_cookie_hash(req, hash) != COOKIE_FOUND) {
		reply_error(req, 401, "invalid_session",
		    "no valid session: log in again");
		goto out;
	}
	switch (store_session(req->db, hash, &u)) {
	case STORE_OK:
		break;
	case STORE_NONE:
		reply_error(req, 401, "invalid_session",
		    "no valid session: log in again");
		goto out;
	case STORE_UNAVAILABLE:
		reply_unavailable(req);
		goto out;
	default:
		reply_internal(req);
		goto out;
	}
	now = util_now_ms() / 1000;
	jwt = jwtkey_mint(req->conf->keys, &req->conf->jwt, u.id, u.name, u.sid,
	    now, &exp, err, sizeof(err));
	if (jwt == NULL) {
		log_warnx_ratelimited(10, "token: cannot mint for uid=%lld: %s",
		    (long long)u.id, err);
		reply_internal(req);
		goto out;
	}
	o = json_pack("{s:s, s:s, s:I, s:I}", "token", jwt,
	    "token_type", "Bearer",
	    "expires_in", (json_int_t)(exp - now),
	    "expires_at", (json_int_t)exp);
	if (o != NULL && req->conf->relay_url != NULL &&
	    json_object_set_new(o, "relay_url",
	    json_string(req->conf->relay_url)) < 0) {
		json_decref(o);
		o = NULL;
	}
	reply_init(&r, 200);
	reply_header(&r, "Pragma", "no-cache");
	reply_json(req, &r, o);
	log_debug("token uid=%lld exp=%lld", (long long)u.id, (long long)exp);
out:
	if (jwt != NULL) {
		explicit_bzero(jwt, strlen(jwt));
		free(jwt);
	}
	explicit_bzero(hash, sizeof(hash));
}
