/*
 * form.c: login credentials out of a request body.
 *
 * Two encodings are accepted (PROTOCOL.md §1): a JSON object, parsed
 * strictly by jsonutil (duplicates refused, depth bounded, UTF-8 checked),
 * and application/x-www-form-urlencoded (WHATWG URL §5.1: '&'-separated
 * pairs, '+' is a space, %XX escapes).  A malformed escape, invalid UTF-8
 * or a NUL byte is a 400, never silently repaired: what reaches the
 * database is exactly what the user typed.  Every buffer that held a
 * password is wiped before it is freed.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jsonutil.h"
#include "token.h"

static int
form_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decode (in, n) to out (room for n + 1).  Returns the decoded
 * length, or -1 for a bad escape, a NUL or invalid UTF-8.
 */
static ssize_t
form_decode(const char *in, size_t n, char *out, const char **reason)
{
	size_t	i, o = 0;
	int	hi, lo;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '+') {
			out[o++] = ' ';
		} else if (c == '%') {
			if (i + 2 >= n) {
				*reason = "bad percent escape in form body";
				return -1;
			}
			hi = form_hexval((unsigned char)in[i + 1]);
			lo = form_hexval((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0) {
				*reason = "bad percent escape in form body";
				return -1;
			}
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
	if (memchr(out, '\0', o) != NULL) {
		*reason = "NUL byte in form body";
		return -1;
	}
	if (!util_utf8_valid(out, o)) {
		*reason = "invalid UTF-8 in form body";
		return -1;
	}
	return (ssize_t)o;
}

/* Decode a urlencoded body pair by pair; see token.h. */
int
form_parse(const char *body, size_t len,
    int (*cb)(void *, const char *, const char *, size_t), void *arg,
    const char **reason)
{
	char		*buf;
	const char	*p, *end, *amp, *eq;
	ssize_t		 nl, vl;
	int		 rc = 0;

	if ((buf = malloc(len + 2)) == NULL) {
		*reason = "out of memory";
		return -1;
	}
	end = body + len;
	for (p = body; p < end && rc == 0; p = amp + 1) {
		amp = memchr(p, '&', (size_t)(end - p));
		if (amp == NULL)
			amp = end;
		if (amp == p)
			continue;	/* "a=1&&b=2" */
		eq = memchr(p, '=', (size_t)(amp - p));
		if (eq == NULL)
			eq = amp;
		/* Name and value decoded one after the other into buf. */
		if ((nl = form_decode(p, (size_t)(eq - p), buf, reason)) < 0) {
			rc = -1;
			break;
		}
		vl = 0;
		buf[nl + 1] = '\0';
		if (eq < amp && (vl = form_decode(eq + 1,
		    (size_t)(amp - eq - 1), buf + nl + 1, reason)) < 0) {
			rc = -1;
			break;
		}
		rc = cb(arg, buf, buf + nl + 1, (size_t)vl);
		explicit_bzero(buf, (size_t)nl + (size_t)vl + 2);
	}
	explicit_bzero(buf, len + 2);
	free(buf);
	return rc;
}

/* Keep a copy of a credential, refusing a second one. */
static int
form_take(char **dst, size_t *dlen, const char *v, size_t vlen, size_t max,
    const char *what, const char **reason)
{
	static const char *const dup[] = { "username given twice",
	    "password given twice" };
	static const char *const bad[] = { "username must be 1 to 64 bytes",
	    "password must be 1 to 1024 bytes" };
	int	 k = strcmp(what, "username") == 0 ? 0 : 1;

	if (*dst != NULL) {
		*reason = dup[k];
		return -1;
	}
	if (vlen == 0 || vlen > max || memchr(v, '\0', vlen) != NULL) {
		*reason = bad[k];
		return -1;
	}
	if ((*dst = malloc(vlen + 1)) == NULL) {
		*reason = "out of memory";
		return -1;
	}
	memcpy(*dst, v, vlen);
	(*dst)[vlen] = '\0';
	*dlen = vlen;
	return 0;
}

struct form_ctx {
	struct credentials	*cred;
	const char		*reason;
};

static int
form_cred_cb(void *arg, const char *name, const char *value, size_t vlen)
{
	struct form_ctx	*fc = arg;

	if (strcmp(name, "username") == 0)
		return form_take(&fc->cred->username, &fc->cred->ulen, value,
		    vlen, FORM_USERNAME_MAX, "username", &fc->reason);
	if (strcmp(name, "password") == 0)
		return form_take(&fc->cred->password, &fc->cred->plen, value,
		    vlen, FORM_PASSWORD_MAX, "password", &fc->reason);
	return 0;
}

/* Is the media type of content_type `type` (parameters ignored)? */
int
form_is_type(const char *content_type, const char *type)
{
	size_t	n = strlen(type);
	const char *p;

	if (content_type == NULL)
		return 0;
	while (*content_type == ' ' || *content_type == '\t')
		content_type++;
	if (strncasecmp(content_type, type, n) != 0)
		return 0;
	p = content_type + n;
	while (*p == ' ' || *p == '\t')
		p++;
	return *p == '\0' || *p == ';';
}

/* Wipe the string a jansson value holds before it is freed. */
static void
form_wipe_json_string(json_t *obj, const char *key)
{
	json_t	*v = json_object_get(obj, key);

	if (json_is_string(v))
		explicit_bzero((char *)(uintptr_t)json_string_value(v),
		    json_string_length(v));
}

/* Credentials from a JSON or urlencoded body; see token.h. */
int
form_credentials(const char *content_type, const char *body, size_t len,
    struct credentials *cred, const char **reason)
{
	struct form_ctx	 fc;
	json_t		*obj, *u, *pw;
	int		 rc = -1;

	memset(cred, 0, sizeof(*cred));
	*reason = "bad request";
	if (form_is_type(content_type, "application/json")) {
		if ((obj = jsonutil_parse_object(body, len, JSONUTIL_MAX_DEPTH,
		    reason)) == NULL) {
			*reason = "body is not a valid JSON object";
			goto out;
		}
		u = json_object_get(obj, "username");
		pw = json_object_get(obj, "password");
		if (!json_is_string(u) || !json_is_string(pw)) {
			*reason = "username and password must be strings";
		} else if (form_take(&cred->username, &cred->ulen,
		    json_string_value(u), json_string_length(u),
		    FORM_USERNAME_MAX, "username", reason) == 0 &&
		    form_take(&cred->password, &cred->plen,
		    json_string_value(pw), json_string_length(pw),
		    FORM_PASSWORD_MAX, "password", reason) == 0)
			rc = 0;
		form_wipe_json_string(obj, "password");
		json_decref(obj);
	} else if (form_is_type(content_type,
	    "application/x-www-form-urlencoded")) {
		fc.cred = cred;
		fc.reason = NULL;
		if (form_parse(body, len, form_cred_cb, &fc, reason) != 0) {
			if (fc.reason != NULL)
				*reason = fc.reason;
			goto out;
		}
		if (cred->username == NULL || cred->password == NULL) {
			*reason = "username and password are required";
			goto out;
		}
		rc = 0;
	} else {
		*reason = "Content-Type must be application/json or "
		    "application/x-www-form-urlencoded";
	}
out:
	if (rc != 0)
		form_credentials_clear(cred);
	return rc;
}

/* Wipe and free credentials. */
void
form_credentials_clear(struct credentials *cred)
{
	if (cred->username != NULL) {
		explicit_bzero(cred->username, cred->ulen);
		free(cred->username);
	}
	if (cred->password != NULL) {
		explicit_bzero(cred->password, cred->plen);
		free(cred->password);
	}
	memset(cred, 0, sizeof(*cred));
}
