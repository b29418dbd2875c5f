/*
 * origin.h: the Origin allow-list and check both programs share
 * (RFC 6454 serialised origins; PROTOCOL.md §1 and §3).
 *
 * Nothing here logs; failures are reported by return value.
 */
#ifndef PARLEY_ORIGIN_H
#define PARLEY_ORIGIN_H

#include <stddef.h>

/* Longest origin (scheme://host[:port]) an allow-list entry may be. */
#define ORIGIN_MAX	256

/* Canonical origins ("https://chat.example.com", "http://[::1]:8080"). */
struct origin_list {
	char	**v;
	size_t	  n;
};

/*
 * Parse PARLEY_ALLOWED_ORIGINS: comma-separated scheme://host[:port]
 * entries, spaces around commas ignored.  "*", "null", paths and empty
 * entries are refused.  NULL or "" gives an empty list (same host only).
 * Returns 0, or -1 with a one-line reason in err; *list is untouched on
 * failure.  Free a parsed list with origin_list_free.
 */
int	origin_list_parse(const char *spec, struct origin_list *list,
	    char *err, size_t errlen);

/* Release a list from origin_list_parse (NULL or empty: nothing). */
void	origin_list_free(struct origin_list *);

/*
 * The Origin decision: 1 when the request may proceed, 0 when it is
 * refused.  No Origin (NULL): allowed.  "null" or garbage (a path, even a
 * lone trailing '/', which no browser sends: RFC 6454 §6.2): refused.
 * Otherwise the Origin must be in the list, or, when the list is empty
 * (or NULL), be the request's own origin: its scheme equal to `scheme`,
 * the scheme the client used ("http" or "https": X-Forwarded-Proto from a
 * trusted proxy, or the server's own), and its host[:port] equal to the
 * Host header, default ports ignored.  A NULL or other `scheme` matches no
 * Origin under the same-host rule.  `scheme` does not matter with a list:
 * its entries name their schemes.
 */
int	origin_allowed(const struct origin_list *, const char *origin,
	    const char *host, const char *scheme);

/*
 * Canonical form of an origin for comparison: scheme and host lower-cased,
 * the scheme's default port (80, 443) removed.  Returns 0, or -1 when `in`
 * is not scheme://host[:port] with nothing after it, or out is too small.
 */
int	origin_canon(const char *in, char *out, size_t outlen);

#endif
