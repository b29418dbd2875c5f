/*
 * token.c: POST token, the reason the service exists (PROTOCOL.md §1).
 *
 * A live session cookie buys a short-lived JWT for the relay: sub (user
 * id), name, sid (the session id, which the relay checks against the
 * database; never the cookie secret), signed by jwtkey with the current
 * key.  The answer must not be cached anywhere: Cache-Control: no-store
 * and, for HTTP/1.0 caches, Pragma: no-cache.
 *
 * This is the hot path of the service, so the session usually comes from
 * the session cache (session_find) and the reply is written straight into
 * a stack buffer instead of through a jansson object.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "token.h"

#define TOKEN_BODY_MAX	(JWTKEY_MAX_TOKEN + 4096)

/*
 * The 200 body: {"token","token_type","expires_in","expires_at"[,"relay_url"]}
 * into buf.  Returns its length, or 0 when it does not fit.
 */
static size_t
token_body(char *buf, size_t cap, const char *jwt, int64_t now, int64_t exp,
    const char *relay_url)
{
	size_t	len;
	int	n;

	n = snprintf(buf, cap, "{\"token\":\"%s\",\"token_type\":\"Bearer\","
	    "\"expires_in\":%lld,\"expires_at\":%lld", jwt,
	    (long long)(exp - now), (long long)exp);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	len = (size_t)n;
	if (relay_url != NULL) {
		if (len + 13 >= cap)
			return 0;
		memcpy(buf + len, ",\"relay_url\":", 13);
		len += 13;
		if (reply_json_str(buf, cap, &len, relay_url) < 0)
			return 0;
	}
	if (len + 1 >= cap)
		return 0;
	buf[len++] = '}';
	buf[len] = '\0';
	return len;
}

/* POST token. */
void
token_handle(struct request *req)
{
	unsigned char		 hash[UTIL_SHA256_LEN];
	struct store_user	 u;
	struct reply		 r;
	char			 err[256];
	char			 body[TOKEN_BODY_MAX];
	char			*jwt = NULL;
	int64_t			 now, exp;
	size_t			 len = 0;

	if (session_cookie_hash(req, hash) != COOKIE_FOUND) {
		reply_error(req, 401, "invalid_session",
		    "no valid session: log in again");
		goto out;
	}
	switch (session_find(req, hash, &u)) {
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
	if ((len = token_body(body, sizeof(body), jwt, now, exp,
	    req->conf->relay_url)) == 0) {
		log_warnx_ratelimited(10, "token: reply too large");
		reply_internal(req);
		goto out;
	}
	reply_init(&r, 200);
	reply_header(&r, "Pragma", "no-cache");
	reply_send(req, &r, "application/json", body, len);
	log_debug("token uid=%lld exp=%lld", (long long)u.id, (long long)exp);
out:
	if (jwt != NULL) {
		explicit_bzero(jwt, strlen(jwt));
		free(jwt);
	}
	/* The body holds the token too. */
	explicit_bzero(body, len);
	explicit_bzero(hash, sizeof(hash));
}
