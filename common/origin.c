/*
 * origin.c: Origin checks shared by parley-token (the CSRF check of its
 * POST routes, PROTOCOL.md §1) and parley-relay (the WebSocket handshake,
 * PROTOCOL.md §3 PARLEY_ALLOWED_ORIGINS).
 *
 * Browsers send Origin on every cross-origin request, on same-origin POSTs
 * and on every WebSocket handshake, so an Origin that is neither listed nor
 * our own (the scheme the client used, and the Host it asked for) was
 * started by another site.  Requests without Origin (curl, native clients,
 * old browsers) pass.  Comparison is on a canonical form (lower case,
 * default port dropped), never text or a prefix match;
 * the allow-list refuses "*", "null" and anything that is not
 * scheme://host[:port], so a typo fails at startup instead of silently
 * allowing or refusing.  An Origin header with anything after host[:port],
 * a lone trailing '/' included, is refused: browsers serialise origins
 * without one (RFC 6454 §6.2), and both programs must decide alike.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "origin.h"

static char
origin_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Bytes allowed in host[:port] of a serialised origin (RFC 6454 §6.2). */
static int
origin_hostchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return strchr("-._~[]:%!$&'()*+,;=", c) != NULL && c != '\0';
}

/* Canonical origin; see origin.h. */
int
origin_canon(const char *in, char *out, size_t outlen)
{
	const char	*p, *hp, *colon, *hend;
	size_t		 slen, hlen, i, o = 0;
	char		 scheme[16];

	if (in == NULL || (p = strstr(in, "://")) == NULL)
		return -1;
	slen = (size_t)(p - in);
	if (slen == 0 || slen >= sizeof(scheme))
		return -1;
	for (i = 0; i < slen; i++) {
		char c = origin_lower(in[i]);
		if (!((c >= 'a' && c <= 'z') || (i > 0 && ((c >= '0' &&
		    c <= '9') || c == '+' || c == '-' || c == '.'))))
			return -1;
		scheme[i] = c;
	}
	scheme[slen] = '\0';
	hp = p + 3;
	hlen = strlen(hp);
	if (hlen == 0 || hlen >= ORIGIN_MAX)
		return -1;
	for (i = 0; i < hlen; i++)
		if (!origin_hostchar((unsigned char)hp[i]) || hp[i] == '@')
			return -1;
	/* A port is what follows the last ':' outside an IPv6 literal. */
	colon = strrchr(hp, ':');
	if (colon != NULL && strchr(colon, ']') != NULL)
		colon = NULL;
	/*
	 * The host before it: a name without ':' '[' ']', or one IPv6 literal
	 * (RFC 3986 §3.2.2).  Else "https://a:b:443" would pass as "a:b".
	 */
	hend = colon != NULL ? colon : hp + hlen;
	if (hp[0] == '[' ? hend - hp < 2 || hend[-1] != ']' ||
	    memchr(hp + 1, '[', (size_t)(hend - hp - 1)) != NULL ||
	    memchr(hp, ']', (size_t)(hend - hp - 1)) != NULL :
	    memchr(hp, ':', (size_t)(hend - hp)) != NULL ||
	    memchr(hp, '[', (size_t)(hend - hp)) != NULL ||
	    memchr(hp, ']', (size_t)(hend - hp)) != NULL)
		return -1;
	if (colon != NULL) {
		const char *port = colon + 1;

		if (*port == '\0' || strspn(port, "0123456789") != strlen(port))
			return -1;
		if ((strcmp(scheme, "http") == 0 && strcmp(port, "80") == 0) ||
		    (strcmp(scheme, "https") == 0 && strcmp(port, "443") == 0))
			hlen = (size_t)(colon - hp);
		if (colon == hp)
			return -1;
	}
	if (slen + 3 + hlen + 1 > outlen)
		return -1;
	for (i = 0; i < slen; i++)
		out[o++] = scheme[i];
	memcpy(out + o, "://", 3);
	o += 3;
	for (i = 0; i < hlen; i++)
		out[o++] = origin_lower(hp[i]);
	out[o] = '\0';
	return 0;
}

/* Parse the allow-list; see origin.h. */
int
origin_list_parse(const char *spec, struct origin_list *list, char *err,
    size_t errlen)
{
	struct origin_list	 l = { NULL, 0 };
	const char		*p, *e, *s;
	char			 item[ORIGIN_MAX + 1], canon[ORIGIN_MAX + 1];
	size_t			 n;
	char			**v;

	if (spec == NULL || *spec == '\0') {
		*list = l;
		return 0;
	}
	for (p = spec;; p = e + 1) {
		e = strchr(p, ',');
		if (e == NULL)
			e = p + strlen(p);
		s = p;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		n = (size_t)(e - s);
		while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		if (n == 0) {
			snprintf(err, errlen, "allowed_origins: empty entry");
			goto fail;
		}
		if (n > ORIGIN_MAX) {
			snprintf(err, errlen, "allowed_origins: entry too long");
			goto fail;
		}
		memcpy(item, s, n);
		item[n] = '\0';
		if (strcmp(item, "*") == 0) {
			snprintf(err, errlen, "allowed_origins: '*' is refused: "
			    "list each origin (scheme://host[:port])");
			goto fail;
		}
		if (strcasecmp(item, "null") == 0) {
			snprintf(err, errlen, "allowed_origins: 'null' cannot "
			    "be allowed");
			goto fail;
		}
		if (origin_canon(item, canon, sizeof(canon)) < 0) {
			snprintf(err, errlen, "allowed_origins: '%s' is not "
			    "scheme://host[:port] (no path, no trailing slash)",
			    item);
			goto fail;
		}
		if ((v = realloc(l.v, (l.n + 1) * sizeof(*v))) == NULL)
			goto nomem;
		l.v = v;
		if ((l.v[l.n] = strdup(canon)) == NULL)
			goto nomem;
		l.n++;
		if (*e == '\0')
			break;
	}
	*list = l;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	origin_list_free(&l);
	return -1;
}

/* Release a list from origin_list_parse. */
void
origin_list_free(struct origin_list *l)
{
	size_t	i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* The Origin decision; see origin.h. */
int
origin_allowed(const struct origin_list *list, const char *origin,
    const char *host, const char *scheme)
{
	char		 canon[ORIGIN_MAX + 1], hostc[ORIGIN_MAX + 16];
	char		 mine[ORIGIN_MAX + 1];
	size_t		 i;

	if (origin == NULL)
		return 1;
	if (origin_canon(origin, canon, sizeof(canon)) < 0)
		return 0;	/* "null", garbage, a path or a trailing '/' */
	if (list != NULL && list->n > 0) {
		for (i = 0; i < list->n; i++)
			if (strcmp(list->v[i], canon) == 0)
				return 1;
		return 0;
	}
	/*
	 * Same origin: the request's own scheme and Host, canonicalised the
	 * same way, so an https page's Origin never passes for a request that
	 * came over http (or the reverse), and the default port is the one
	 * of the scheme actually used.
	 */
	if (scheme == NULL || (strcmp(scheme, "http") != 0 &&
	    strcmp(scheme, "https") != 0))
		return 0;
	if (host == NULL || *host == '\0' || strlen(host) > ORIGIN_MAX)
		return 0;
	snprintf(hostc, sizeof(hostc), "%s://%s", scheme, host);
	if (origin_canon(hostc, mine, sizeof(mine)) < 0)
		return 0;
	return strcmp(mine, canon) == 0;
}
