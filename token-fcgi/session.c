/*
 * session.c: the session cookie and the two routes about it,
 * GET session and POST logout (PROTOCOL.md §1).
 *
 * The cookie holds a random secret; the database holds only its SHA-256,
 * so a leaked sessions table opens no session.  A missing, malformed,
 * unknown, expired or revoked cookie is one answer: 401 invalid_session.
 * Sessions are found through the session cache (scache.c) when it is on;
 * logout always goes to the database and drops this process's cached
 * entry at once (other processes learn of it from the notification).
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

/* The session of a cookie hash: cache, else database; see token.h. */
enum store_result
session_find(struct request *req, const unsigned char hash[UTIL_SHA256_LEN],
    struct store_user *out)
{
	enum store_result	r;
	uint64_t		ticket;
	int64_t			mono;

	if (!scache_enabled())
		return store_session(req->db, hash, out);
	mono = util_mono_ms();
	if (scache_get(hash, mono, util_now_ms() / 1000, out))
		return STORE_OK;
	/* Before the query: a revocation handled meanwhile voids the ticket. */
	ticket = scache_ticket();
	r = store_session(req->db, hash, out);
	if (r == STORE_OK)
		(void)scache_put(hash, out, ticket, mono);
	return r;
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
	switch (session_find(req, hash, &u)) {
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
	enum store_result	 r;
	struct reply		 rep;

	if ((cr = session_cookie_hash(req, hash)) != COOKIE_FOUND) {
		session_invalid(req, cr == COOKIE_INVALID);
		goto out;
	}
	r = store_logout(req->db, hash);
	/* Whatever the database said, this process forgets the cookie now. */
	scache_forget(hash);
	switch (r) {
	case STORE_OK:
		reply_init(&rep, 204);
		reply_set_cookie(&rep, req->conf, NULL, 0);
		reply_send(req, &rep, NULL, NULL, 0);
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
