/*
 * handler.c: from a request to the handler that answers it.
 *
 * The service is mounted under any prefix, so it routes on the last path
 * segment of SCRIPT_NAME + PATH_INFO (PROTOCOL.md §2, "Details").  The
 * checks every route shares happen here, in this order: unknown route 404,
 * wrong method 405 with Allow, foreign Origin on a POST 403.  HEAD is
 * answered like GET without a body.  One debug line per request, with no
 * cookie, body or token in it.
 */
#include "config.h"

#include <string.h>

#include "log.h"
#include "token.h"

const struct handler_route handler_routes[] = {
	{ "login",	HANDLER_POST,	login_handle },
	{ "logout",	HANDLER_POST,	session_logout },
	{ "token",	HANDLER_POST,	token_handle },
	{ "session",	HANDLER_GET,	session_get },
	{ "jwks.json",	HANDLER_GET,	jwks_handle },
	{ NULL,		0,		NULL }
};

/* The route named `route`, or NULL. */
const struct handler_route *
handler_find(const char *route)
{
	const struct handler_route	*h;

	for (h = handler_routes; h->name != NULL; h++)
		if (strcmp(h->name, route) == 0)
			return h;
	return NULL;
}

/* Route and answer one request; see token.h. */
void
handler_dispatch(struct request *req)
{
	const struct handler_route	*h;
	struct reply			 r;
	int64_t				 t0 = 0;
	int				 ok;

	if (log_level >= LOG_LEVEL_DEBUG)
		t0 = util_mono_ms();
	if ((h = handler_find(req->route)) == NULL) {
		reply_error(req, 404, "not_found", "no such resource");
		goto done;
	}
	if (h->method == HANDLER_POST)
		ok = strcmp(req->method, "POST") == 0;
	else
		ok = strcmp(req->method, "GET") == 0 || req->head;
	if (!ok) {
		reply_init(&r, 405);
		reply_header(&r, "Allow", "%s", h->method == HANDLER_POST ?
		    "POST" : "GET, HEAD");
		reply_error_r(req, &r, "method_not_allowed",
		    h->method == HANDLER_POST ? "use POST" : "use GET");
		goto done;
	}
	if (h->method == HANDLER_POST &&
	    !origin_allowed(&req->conf->origins, req->origin, req->host,
	    req->scheme)) {
		reply_error(req, 403, "forbidden_origin",
		    "requests from this origin are not allowed");
		goto done;
	}
	h->fn(req);
done:
	if (req->status == 0)
		reply_internal(req);
	log_debug("request ip=%s method=%.16s route=%s status=%d ms=%lld",
	    req->remote_addr ? req->remote_addr : "-", req->method,
	    req->route[0] ? req->route : "-", req->status,
	    (long long)(util_mono_ms() - t0));
}
