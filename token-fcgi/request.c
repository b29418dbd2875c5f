/*
 * request.c: one HTTP request as the web server hands it over, whether as
 * CGI (environment and stdin) or FastCGI (parameters and the STDIN stream).
 *
 * It picks out the few variables the handlers use, derives the route from
 * SCRIPT_NAME + PATH_INFO, and reads the body under a cap: CONTENT_LENGTH
 * is checked before a byte is read, and exactly that many bytes are read
 * (RFC 3875 §4.2), so an oversized body never reaches memory.  Writing the
 * answer is reply.c's job.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "token.h"

/* A request variable through the transport. */
const char *
request_param(const struct request *req, const char *name)
{
	return req->io->param(req->ctx, name);
}

/* The client's scheme from HTTPS / REQUEST_SCHEME; see token.h. */
const char *
request_scheme(const char *https, const char *scheme)
{
	if (scheme != NULL && strcasecmp(scheme, "https") == 0)
		return "https";
	if (https != NULL && *https != '\0' && strcasecmp(https, "off") != 0)
		return "https";
	return "http";
}

/* The last segment of SCRIPT_NAME + PATH_INFO; see token.h. */
int
request_route(const char *script_name, const char *path_info, char *out,
    size_t outlen)
{
	const char	*seg, *slash;
	size_t		 n, m = 0;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	if (script_name == NULL)
		script_name = "";
	if (path_info == NULL)
		path_info = "";
	if ((slash = strrchr(path_info, '/')) != NULL) {
		seg = slash + 1;
		n = strlen(seg);
	} else {
		/* The segment may straddle: SCRIPT_NAME "/a/lo", PATH_INFO "gin". */
		slash = strrchr(script_name, '/');
		seg = slash ? slash + 1 : script_name;
		m = strlen(seg);
		n = strlen(path_info);
		if (m + n == 0 || m + n >= outlen)
			return -1;
		memcpy(out, seg, m);
		memcpy(out + m, path_info, n);
		out[m + n] = '\0';
		return 0;
	}
	if (n == 0 || n >= outlen)
		return -1;
	memcpy(out, seg, n + 1);
	return 0;
}

/* Fill *req from the transport; see token.h. */
void
request_init(struct request *req, const struct request_io *io, void *ctx)
{
	const char	*m;

	memset(req, 0, sizeof(*req));
	req->io = io;
	req->ctx = ctx;
	m = io->param(ctx, "REQUEST_METHOD");
	req->method = m ? m : "";
	req->head = strcmp(req->method, "HEAD") == 0;
	req->cookie = io->param(ctx, "HTTP_COOKIE");
	req->origin = io->param(ctx, "HTTP_ORIGIN");
	req->host = io->param(ctx, "HTTP_HOST");
	req->scheme = request_scheme(io->param(ctx, "HTTPS"),
	    io->param(ctx, "REQUEST_SCHEME"));
	req->content_type = io->param(ctx, "CONTENT_TYPE");
	req->content_length = io->param(ctx, "CONTENT_LENGTH");
	req->remote_addr = io->param(ctx, "REMOTE_ADDR");
	req->user_agent = io->param(ctx, "HTTP_USER_AGENT");
	request_route(io->param(ctx, "SCRIPT_NAME"), io->param(ctx, "PATH_INFO"),
	    req->route, sizeof(req->route));
}

/* CONTENT_LENGTH under a cap; see token.h. */
enum request_body
request_content_length(const char *value, size_t cap, size_t *len)
{
	uint64_t	 v = 0;
	const char	*p;

	*len = 0;
	if (value == NULL || *value == '\0')
		return REQUEST_BODY_OK;
	for (p = value; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return REQUEST_BODY_TOO_LARGE;
		if (v > (UINT64_MAX - 9) / 10)
			return REQUEST_BODY_TOO_LARGE;
		v = v * 10 + (uint64_t)(*p - '0');
		if (p - value > 20)
			return REQUEST_BODY_TOO_LARGE;
	}
	if (v > cap)
		return REQUEST_BODY_TOO_LARGE;
	*len = (size_t)v;
	return REQUEST_BODY_OK;
}

/* Read the whole declared body; see token.h. */
enum request_body
request_read_body(struct request *req, size_t cap, char **body, size_t *len)
{
	enum request_body	 r;
	char			*buf;
	size_t			 want, got = 0;
	ssize_t			 n;

	*body = NULL;
	*len = 0;
	if ((r = request_content_length(req->content_length, cap, &want)) !=
	    REQUEST_BODY_OK)
		return r;
	if ((buf = malloc(want + 1)) == NULL)
		return REQUEST_BODY_BAD;
	while (got < want) {
		n = req->io->read(req->ctx, buf + got, want - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got < want) {
		request_body_free(buf, got);
		return REQUEST_BODY_BAD;
	}
	buf[want] = '\0';
	*body = buf;
	*len = want;
	req->body_read = 1;
	return REQUEST_BODY_OK;
}

/* Nothing of the body left to read; see token.h. */
int
request_body_done(const struct request *req)
{
	size_t	len;

	if (req->body_read)
		return 1;
	return request_content_length(req->content_length, SIZE_MAX, &len) ==
	    REQUEST_BODY_OK && len == 0;
}

/* Wipe and free a body (it may hold a password). */
void
request_body_free(char *body, size_t len)
{
	if (body == NULL)
		return;
	explicit_bzero(body, len);
	free(body);
}

/*
 * Discard the unread rest of the input; see token.h.  FastCGI needs this
 * even after CONTENT_LENGTH bytes: the empty STDIN record that ends the
 * stream must be consumed too, or libfcgi reads it as the start of the next
 * request on a kept-alive connection and drops the connection.
 */
int
request_drain(struct request *req, size_t limit)
{
	char	buf[4096];
	size_t	total = 0;
	ssize_t	n;

	for (;;) {
		n = req->io->read(req->ctx, buf, sizeof(buf));
		if (n == 0)
			return 0;
		if (n < 0)
			return -1;
		total += (size_t)n;
		if (total > limit)
			return -1;
	}
}
