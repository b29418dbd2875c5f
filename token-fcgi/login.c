/*
 * login.c: POST login (PROTOCOL.md §1).
 *
 * The body is read under PARLEY_MAX_BODY, the credentials parsed, and one
 * call to parley.login() does the rest in the database: throttling per
 * account and per client address, the password check (with a dummy hash
 * for unknown users, so both failures cost the same), and the new session
 * row.  The session is a fresh 32-byte random secret; the browser gets it
 * base64url-encoded in an HttpOnly cookie and the database only its
 * SHA-256.  Every copy of the password and the secret is wiped here.
 */
#include "config.h"

#include <string.h>

#include "log.h"
#include "token.h"

#define LOGIN_UA_MAX	256

/*
 * The User-Agent as stored with the session: printable ASCII only
 * (anything else becomes '?'), at most LOGIN_UA_MAX bytes, so it is always
 * valid text for the database and harmless in an admin's terminal.
 */
static void
login_user_agent(const char *ua, char *out, size_t outlen)
{
	size_t	i;

	for (i = 0; ua != NULL && ua[i] != '\0' && i + 1 < outlen; i++) {
		unsigned char c = (unsigned char)ua[i];

		out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	out[i] = '\0';
}

static void
login_reply_ok(struct request *req, const struct store_user *u,
    const char *cookie)
{
	struct reply	 r;
	json_t		*o;

	o = json_pack("{s:{s:I, s:s}, s:I}", "user", "id", (json_int_t)u->id,
	    "name", u->name, "session_expires_at", (json_int_t)u->expires_at);
	reply_init(&r, 200);
	reply_set_cookie(&r, req->conf, cookie, req->conf->session_ttl_s);
	reply_json(req, &r, o);
	/* The reply headers held the cookie secret. */
	explicit_bzero(r.headers, sizeof(r.headers));
}

/* POST login. */
void
login_handle(struct request *req)
{
	struct credentials	 cred = { 0 };
	struct store_login	 res;
	struct reply		 r;
	unsigned char		 secret[COOKIE_SECRET_LEN];
	unsigned char		 hash[UTIL_SHA256_LEN];
	char			 cookie[64], ua[LOGIN_UA_MAX + 1];
	const char		*reason = NULL;
	char			*body = NULL;
	size_t			 len = 0;

	switch (request_read_body(req, req->conf->max_body, &body, &len)) {
	case REQUEST_BODY_OK:
		break;
	case REQUEST_BODY_TOO_LARGE:
		reply_error(req, 413, "too_large", "request body too large");
		goto out;
	default:
		reply_error(req, 400, "bad_request",
		    "request body shorter than its Content-Length");
		goto out;
	}
	if (form_credentials(req->content_type, body, len, &cred, &reason) < 0) {
		reply_error(req, 400, "bad_request", reason);
		goto out;
	}
	request_body_free(body, len);
	body = NULL;

	if (util_random(secret, sizeof(secret)) < 0) {
		log_warnx_ratelimited(10, "login: no randomness available");
		reply_internal(req);
		goto out;
	}
	/* The cookie is the secret's base64url text; the database gets the
	 * SHA-256 of that text, as session lookups compute it (cookie.c). */
	if (util_b64url_encode(secret, sizeof(secret), cookie,
	    sizeof(cookie)) < 0) {
		reply_internal(req);
		goto out;
	}
	util_sha256(cookie, strlen(cookie), hash);
	login_user_agent(req->user_agent, ua, sizeof(ua));

	switch (store_login(req->db, &cred, req->remote_addr, hash,
	    req->conf->session_ttl_s, ua, &res)) {
	case STORE_OK:
		break;
	case STORE_UNAVAILABLE:
		reply_unavailable(req);
		goto out;
	default:
		reply_internal(req);
		goto out;
	}
	switch (res.status) {
	case STORE_LOGIN_OK:
		login_reply_ok(req, &res.user, cookie);
		log_debug("login ok uid=%lld ip=%s", (long long)res.user.id,
		    req->remote_addr ? req->remote_addr : "-");
		break;
	case STORE_LOGIN_INVALID:
		reply_error(req, 401, "invalid_credentials",
		    "invalid username or password");
		log_debug("login failed ip=%s",
		    req->remote_addr ? req->remote_addr : "-");
		break;
	case STORE_LOGIN_THROTTLED:
		reply_init(&r, 429);
		reply_header(&r, "Retry-After", "%lld",
		    (long long)res.retry_after);
		reply_error_r(req, &r, "too_many_attempts",
		    "too many failed attempts: try again later");
		log_debug("login throttled ip=%s retry_after=%lld",
		    req->remote_addr ? req->remote_addr : "-",
		    (long long)res.retry_after);
		break;
	}
out:
	request_body_free(body, len);
	form_credentials_clear(&cred);
	explicit_bzero(secret, sizeof(secret));
	explicit_bzero(hash, sizeof(hash));
	explicit_bzero(cookie, sizeof(cookie));
}
