/*
 * reply.c: the one way answers leave the token service.
 *
 * A reply is a CGI response (RFC 3875 §6): a Status header, our headers and
 * an optional body, assembled in one buffer and written at once, so a
 * client never sees half a response.  Every answer carries
 * X-Content-Type-Options: nosniff and a Cache-Control (no-store unless the
 * handler says otherwise); every error has the JSON body
 * {"error":"<code>","message":"<text>"} (PROTOCOL.md §1).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonutil.h"
#include "log.h"
#include "token.h"

/* Reason phrase for the status line; see token.h. */
const char *
reply_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

/* A JSON string, escaped as jansson escapes it; see token.h. */
int
reply_json_str(char *out, size_t cap, size_t *len, const char *s)
{
	static const char	 hex[] = "0123456789ABCDEF";
	const unsigned char	*p;
	size_t			 o = *len;
	char			 e[7];
	size_t			 el;

	if (o >= cap)
		return -1;
	out[o++] = '"';
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		el = 0;
		switch (*p) {
		case '"':	memcpy(e, "\\\"", 2); el = 2; break;
		case '\\':	memcpy(e, "\\\\", 2); el = 2; break;
		case '\b':	memcpy(e, "\\b", 2); el = 2; break;
		case '\f':	memcpy(e, "\\f", 2); el = 2; break;
		case '\n':	memcpy(e, "\\n", 2); el = 2; break;
		case '\r':	memcpy(e, "\\r", 2); el = 2; break;
		case '\t':	memcpy(e, "\\t", 2); el = 2; break;
		default:
			if (*p < 0x20) {
				memcpy(e, "\\u00", 4);
				e[4] = hex[*p >> 4];
				e[5] = hex[*p & 15];
				el = 6;
			}
			break;
		}
		if (el == 0) {
			if (o + 1 >= cap)
				return -1;
			out[o++] = (char)*p;
			continue;
		}
		if (o + el >= cap)
			return -1;
		memcpy(out + o, e, el);
		o += el;
	}
	if (o + 1 >= cap)
		return -1;
	out[o++] = '"';
	out[o] = '\0';
	*len = o;
	return 0;
}

/* Start a reply; see token.h. */
void
reply_init(struct reply *r, int status)
{
	memset(r, 0, sizeof(*r));
	r->status = status;
	r->cache_control = "no-store";
}

/* Append "Name: value\r\n"; see token.h. */
void
reply_header(struct reply *r, const char *name, const char *fmt, ...)
{
	va_list	ap;
	size_t	room = sizeof(r->headers) - r->hlen;
	int	n, m;

	if (r->overflow)
		return;
	n = snprintf(r->headers + r->hlen, room, "%s: ", name);
	if (n < 0 || (size_t)n >= room)
		goto overflow;
	va_start(ap, fmt);
	m = vsnprintf(r->headers + r->hlen + n, room - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)n + (size_t)m + 2 >= room)
		goto overflow;
	memcpy(r->headers + r->hlen + n + m, "\r\n", 3);
	r->hlen += (size_t)n + (size_t)m + 2;
	return;
overflow:
	r->headers[r->hlen] = '\0';
	r->overflow = 1;
}

/* Session cookie attributes (PROTOCOL.md §1); see token.h. */
void
reply_set_cookie(struct reply *r, const struct conf *c, const char *value,
    int64_t max_age_s)
{
	reply_header(r, "Set-Cookie", "%s=%s; Path=/; HttpOnly; SameSite=Lax; "
	    "Max-Age=%lld%s", c->cookie_name, value ? value : "",
	    value ? (long long)max_age_s : 0LL,
	    c->cookie_secure ? "; Secure" : "");
}

/* Assemble and write; see token.h. */
int
reply_send(struct request *req, struct reply *r, const char *ctype,
    const char *body, size_t len)
{
	char	 head[2048];
	char	 small[4096];	/* every reply but odd ones fits */
	char	*buf;
	size_t	 hl, total;
	int	 n, rc;

	if (r->overflow) {
		log_warnx("reply: headers too long for status %d", r->status);
		reply_init(r, 500);
		ctype = "application/json";
		body = "{\"error\":\"internal\",\"message\":\"internal error\"}";
		len = strlen(body);
	}
	if (r->status == 204) {
		ctype = NULL;
		len = 0;
	}
	n = snprintf(head, sizeof(head), "Status: %d %s\r\n"
	    "X-Content-Type-Options: nosniff\r\n"
	    "Cache-Control: %s\r\n",
	    r->status, reply_reason(r->status), r->cache_control);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	hl = (size_t)n;
	if (ctype != NULL) {
		n = snprintf(head + hl, sizeof(head) - hl,
		    "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, len);
		if (n < 0 || (size_t)n >= sizeof(head) - hl)
			return -1;
		hl += (size_t)n;
	}
	if (hl + r->hlen + 2 >= sizeof(head))
		return -1;
	memcpy(head + hl, r->headers, r->hlen);
	hl += r->hlen;
	memcpy(head + hl, "\r\n", 2);
	hl += 2;

	if (req->head || ctype == NULL)
		len = 0;
	total = hl + len;
	if (total <= sizeof(small))
		buf = small;
	else if ((buf = malloc(total)) == NULL)
		return -1;
	memcpy(buf, head, hl);
	if (len > 0)
		memcpy(buf + hl, body, len);
	rc = req->io->write(req->ctx, buf, total);
	/* The buffer may hold a token or a Set-Cookie secret. */
	explicit_bzero(buf, total);
	if (buf != small)
		free(buf);
	/* So may the headers (Set-Cookie). */
	explicit_bzero(head, hl);
	req->status = r->status;
	return rc;
}

/* JSON body; see token.h. */
int
reply_json(struct request *req, struct reply *r, json_t *obj)
{
	char	*s;
	size_t	 len;
	int	 rc;

	if (obj == NULL || (s = jsonutil_dump(obj)) == NULL) {
		json_decref(obj);
		return reply_internal(req);
	}
	json_decref(obj);
	len = strlen(s);
	rc = reply_send(req, r, "application/json", s, len);
	explicit_bzero(s, len);
	free(s);
	return rc;
}

/* Error body on a prepared reply; see token.h. */
int
reply_error_r(struct request *req, struct reply *r, const char *code,
    const char *message)
{
	json_t	*o;

	o = json_pack("{s:s, s:s}", "error", code, "message", message);
	if (o == NULL)
		return -1;
	return reply_json(req, r, o);
}

/* Error body with a fresh reply; see token.h. */
int
reply_error(struct request *req, int status, const char *code,
    const char *message)
{
	struct reply	r;

	reply_init(&r, status);
	return reply_error_r(req, &r, code, message);
}

/* PROTOCOL.md §1: database unreachable. */
int
reply_unavailable(struct request *req)
{
	struct reply	r;

	reply_init(&r, 503);
	reply_header(&r, "Retry-After", "5");
	return reply_error_r(req, &r, "unavailable",
	    "the service is temporarily unavailable; try again shortly");
}

/* A generic 500: never database text or internals. */
int
reply_internal(struct request *req)
{
	struct reply	r;

	reply_init(&r, 500);
	return reply_error_r(req, &r, "internal", "internal error");
}
