/*
 * load_json.c: a scanner for the relay's messages that finds a few string
 * members of the top-level object ("type", "body", "client_id", "code")
 * without building a tree, so a subscriber costs a linear pass over each
 * message.  It skips nested objects, arrays, numbers and literals and does
 * not validate them: parley-load measures, it does not test the relay's JSON.
 */
#include "config.h"

#include <string.h>

#include "load.h"

static const char *
load_json_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at an opening quote: return the closing quote, or NULL. */
static const char *
load_json_strend(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p;
	}
	return NULL;
}

/* Skip one value starting at p; return the first byte after it, or NULL. */
static const char *
load_json_skip(const char *p, const char *end)
{
	int	depth = 0;

	if (p >= end)
		return NULL;
	if (*p == '"') {
		p = load_json_strend(p, end);
		return p == NULL ? NULL : p + 1;
	}
	if (*p != '{' && *p != '[') {
		while (p < end && *p != ',' && *p != '}' && *p != ']' &&
		    *p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
			p++;
		return p;
	}
	for (; p < end; p++) {
		if (*p == '"') {
			if ((p = load_json_strend(p, end)) == NULL)
				return NULL;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (--depth == 0)
				return p + 1;
		}
	}
	return NULL;
}

/* Scan one object; see load.h. */
int
load_json_scan(const char *s, size_t n, struct load_jmsg *out)
{
	const char		*p = s, *end = s + n, *k, *ke, *v;
	struct load_jstr	*slot;
	size_t			 kl;

	memset(out, 0, sizeof(*out));
	p = load_json_ws(p, end);
	if (p >= end || *p != '{')
		return -1;
	p = load_json_ws(p + 1, end);
	if (p < end && *p == '}')
		return 0;
	for (;;) {
		if (p >= end || *p != '"')
			return -1;
		k = p + 1;
		if ((ke = load_json_strend(p, end)) == NULL)
			return -1;
		kl = (size_t)(ke - k);
		p = load_json_ws(ke + 1, end);
		if (p >= end || *p != ':')
			return -1;
		p = load_json_ws(p + 1, end);
		if (p >= end)
			return -1;
		slot = NULL;
		if (*p == '"') {
			if (kl == 4 && memcmp(k, "type", 4) == 0)
				slot = &out->type;
			else if (kl == 4 && memcmp(k, "body", 4) == 0)
				slot = &out->body;
			else if (kl == 9 && memcmp(k, "client_id", 9) == 0)
				slot = &out->client_id;
			else if (kl == 4 && memcmp(k, "code", 4) == 0)
				slot = &out->code;
		}
		v = p;
		if ((p = load_json_skip(p, end)) == NULL)
			return -1;
		if (slot != NULL) {
			slot->p = v + 1;
			slot->n = (size_t)(p - v - 2);
		}
		p = load_json_ws(p, end);
		if (p >= end)
			return -1;
		if (*p == '}')
			return 0;
		if (*p != ',')
			return -1;
		p = load_json_ws(p + 1, end);
	}
}

/* String comparison; see load.h. */
int
load_json_eq(const struct load_jstr *j, const char *lit)
{
	size_t	n = strlen(lit);

	return j->p != NULL && j->n == n && memcmp(j->p, lit, n) == 0;
}
