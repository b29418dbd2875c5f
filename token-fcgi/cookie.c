/*
 * cookie.c: reading our session cookie out of a Cookie header.
 *
 * RFC 6265 §4.2: "name=value" pairs separated by "; ".  We are lenient in
 * what surrounds our pair (any whitespace, ',' as a separator because
 * servers join repeated Cookie headers with ", ") and strict about our pair
 * itself: cookie-octets only, optional double quotes, a bounded length, and
 * one value.  A second occurrence with a different value is refused rather
 * than guessed at (a sibling subdomain can plant a cookie with our name),
 * so the client gets invalid_session and logs in again.  Other cookies are
 * none of our business and are skipped whatever they contain.
 *
 * The value is hashed on every request, so SHA-256 is fetched from
 * OpenSSL's provider once rather than looked up by EVP_sha256() per call.
 */
#include "config.h"

#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "token.h"

static pthread_once_t	 cookie_md_once = PTHREAD_ONCE_INIT;
static EVP_MD		*cookie_md;	/* kept for the life of the process */

static void
cookie_md_fetch(void)
{
	cookie_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* SHA-256 with the pre-fetched digest (util_sha256 if the fetch failed). */
static void
cookie_sha256(const void *buf, size_t len, unsigned char out[UTIL_SHA256_LEN])
{
	unsigned int	olen = UTIL_SHA256_LEN;

	(void)pthread_once(&cookie_md_once, cookie_md_fetch);
	if (cookie_md == NULL ||
	    EVP_Digest(buf, len, out, &olen, cookie_md, NULL) != 1)
		util_sha256(buf, len, out);
}

/* RFC 6265 cookie-octet. */
static int
cookie_octet(unsigned char c)
{
	return c == 0x21 || (c >= 0x23 && c <= 0x2b) ||
	    (c >= 0x2d && c <= 0x3a) || (c >= 0x3c && c <= 0x5b) ||
	    (c >= 0x5d && c <= 0x7e);
}

/* RFC 7230 tchar. */
static int
cookie_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* See token.h. */
int
cookie_name_ok(const char *name)
{
	size_t	i;

	if (name == NULL || name[0] == '\0' || strlen(name) > 64)
		return 0;
	for (i = 0; name[i] != '\0'; i++)
		if (!cookie_tchar((unsigned char)name[i]))
			return 0;
	return 1;
}

static int
cookie_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Find our cookie; see token.h. */
enum cookie_result
cookie_find(const char *header, const char *name, char *value,
    size_t valuelen)
{
	const char	*p, *end, *eq, *ns, *ne, *vs, *ve;
	size_t		 nlen, hlen, vlen, i;
	int		 found = 0;

	if (valuelen > 0)
		value[0] = '\0';
	if (header == NULL)
		return COOKIE_ABSENT;
	hlen = strlen(header);
	if (hlen > COOKIE_MAX_HEADER)
		return COOKIE_INVALID;
	nlen = strlen(name);
	for (p = header; p < header + hlen; p = end + 1) {
		end = p + strcspn(p, ";,");
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq == NULL)
			continue;	/* not a pair: ignore (RFC 6265 §5.2) */
		ns = p;
		ne = eq;
		while (ns < ne && cookie_space(*ns))
			ns++;
		while (ne > ns && cookie_space(ne[-1]))
			ne--;
		if ((size_t)(ne - ns) != nlen || memcmp(ns, name, nlen) != 0)
			continue;
		vs = eq + 1;
		ve = end;
		while (vs < ve && cookie_space(*vs))
			vs++;
		while (ve > vs && cookie_space(ve[-1]))
			ve--;
		if (ve - vs >= 2 && *vs == '"' && ve[-1] == '"') {
			vs++;
			ve--;
		}
		vlen = (size_t)(ve - vs);
		if (vlen == 0 || vlen > COOKIE_MAX_VALUE || vlen >= valuelen)
			return COOKIE_INVALID;
		for (i = 0; i < vlen; i++)
			if (!cookie_octet((unsigned char)vs[i]))
				return COOKIE_INVALID;
		if (found) {
			if (strlen(value) != vlen || memcmp(value, vs, vlen) != 0)
				return COOKIE_INVALID;
			continue;
		}
		memcpy(value, vs, vlen);
		value[vlen] = '\0';
		found = 1;
	}
	return found ? COOKIE_FOUND : COOKIE_ABSENT;
}

/* Our cookie's value hashed; see token.h. */
enum cookie_result
cookie_hash(const char *header, const char *name,
    unsigned char hash[UTIL_SHA256_LEN])
{
	char			value[COOKIE_MAX_VALUE + 1];
	enum cookie_result	r;

	r = cookie_find(header, name, value, sizeof(value));
	if (r == COOKIE_FOUND)
		cookie_sha256(value, strlen(value), hash);
	explicit_bzero(value, sizeof(value));
	return r;
}
