/*
 * session.c: the session cookie and the two routes about it,
 * GET session and POST logout (PROTOCOL.md §1).
 *
 * The cookie holds a random secret; the database holds only its SHA-256,
 * so a leaked sessions table opens no session.  A missing, malformed,
 * unknown, expired or revoked cookie is one answer: 401 invalid_session.
 */
#include "config.h"

#include <string.h>

#include "log.h"
#include "token.h"

/* Cookie -> SHA-256 of its value; see token.h. */
enum cookie_result
session_cookie_hash(const struct request *req,
    unsigned char hash[UTIL_SHA256_LEN])
{
	return cookie_hash(req->cookie, req->conf->cookie_name, hash);
}

static void
session_invalid(struct request *req, int clear_cookie)
{
	struct reply	r;

	reply_init(&r, 401);
	if (clear_cookie)
		reply_set_cookie(&r, req->conf, NULL, 0);
	reply_error_r(req, &r, "invalid_session",
	    "no valid session: log in again");
}

/* GET session: who is logged in. */
void
session_get(struct request *req)
{
	unsigned char		 hash[UTIL_SHA256_LEN];
	struct store_user	 u;
	struct reply		 r;
	json_t			*o;

	if (session_cookie_hash(req, hash) != COOKIE_FOUND) {
		session_invalid(req, 0);
		goto out;
	}
	switch (store_session(req->db, hash, &u)) {
	case STORE_OK:
		break;
	case STORE_NONE:
		session_invalid(req, 0);
		goto out;
	case STORE_UNAVAILABLE:
		reply_unavailable(req);
		goto out;
	default:
		reply_internal(req);
		goto out;
	}
	o = json_pack("{s:{s:I, s:s}, s:I}", "user", "id", (json_int_t)u.id,
	    "name", u.name, "session_expires_at", (json_int_t)u.expires_at);
	reply_init(&r, 200);
	reply_json(req, &r, o);
out:
	explicit_bzero(hash, sizeof(hash));
}

/*
 * POST logout: revoke the session (the relay closes its sockets with 4011)
 * and clear the cookie.  A cookie that names no live session is a 401, and
 * the cookie is cleared anyway so the browser stops sending it.
 */
void
session_logout(struct request *req)
{
	unsigned char		 hash[UTIL_SHA256_LEN];
	enum cookie_result	 cr;
	struct reply		 r;

	if ((cr = session_cookie_hash(req, hash)) != COOKIE_FOUND) {
		session_invalid(req, cr == COOKIE_INVALID);
		goto out;
	}
	switch (store_logout(req->db, hash)) {
	case STORE_OK:
		reply_init(&r, 204);
		reply_set_cookie(&r, req->conf, NULL, 0);
		reply_send(req, &r, NULL, NULL, 0);
		log_debug("logout ip=%s", req->remote_addr ? req->remote_addr : "-");
		break;
	case STORE_NONE:
		session_invalid(req, 1);
		break;
	case STORE_UNAVAILABLE:
		reply_unavailable(req);
		break;
	default:
		reply_internal(req);
		break;
	}
out:
	explicit_bzero(hash, sizeof(hash));
}
