/*
 * jsonutil.c: strict JSON object input on top of jansson.
 *
 * Before jansson (a recursive parser) sees a byte, the input is checked to
 * be UTF-8 and its bracket nesting is measured by a flat scan that skips
 * strings.  jansson then parses with JSON_REJECT_DUPLICATES; its default
 * already refuses trailing data other than whitespace and "\u0000" escapes.
 * Numbers too large for int64 are a parse error in jansson, so integers that
 * reach jsonutil_get_int always fit.
 */
#include "config.h"

#include <string.h>

#include "jsonutil.h"
#include "util.h"

/* Nesting of [ and { outside strings is at most max_depth: 1, else 0. */
int
jsonutil_depth_ok(const char *buf, size_t len, int max_depth)
{
	size_t	i;
	int	depth = 0, in_str = 0;

	for (i = 0; i < len; i++) {
		char c = buf[i];

		if (in_str) {
			if (c == '\\')
				i++;	/* skip the escaped character */
			else if (c == '"')
				in_str = 0;
			continue;
		}
		switch (c) {
		case '"':
			in_str = 1;
			break;
		case '[':
		case '{':
			if (++depth > max_depth)
				return 0;
			break;
		case ']':
		case '}':
			if (depth > 0)
				depth--;
			break;
		default:
			break;
		}
	}
	return 1;
}

/* Parse exactly one JSON object; NULL with a static *reason on failure. */
json_t *
jsonutil_parse_object(const char *buf, size_t len, int max_depth,
    const char **reason)
{
	json_error_t	 jerr;
	json_t		*root;
	const char	*why = "invalid JSON";

	if (buf == NULL) {
		why = "empty";
		goto fail;
	}
	if (!util_utf8_valid(buf, len)) {
		why = "invalid UTF-8";
		goto fail;
	}
	if (!jsonutil_depth_ok(buf, len, max_depth)) {
		why = "too deep";
		goto fail;
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (root == NULL) {
		if (json_error_code(&jerr) == json_error_duplicate_key)
			why = "duplicate member";
		goto fail;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		why = "not an object";
		goto fail;
	}
	if (reason)
		*reason = NULL;
	return root;
fail:
	if (reason)
		*reason = why;
	return NULL;
}

/* The string member `key`, or NULL when absent or not a string. */
const char *
jsonutil_get_str(const json_t *obj, const char *key)
{
	const json_t	*v;

	if (!json_is_object(obj))
		return NULL;
	v = json_object_get(obj, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The integer member `key` into *out: 0, or -1 if absent or not an integer. */
int
jsonutil_get_int(const json_t *obj, const char *key, int64_t *out)
{
	const json_t	*v;

	if (!json_is_object(obj))
		return -1;
	v = json_object_get(obj, key);
	if (!json_is_integer(v))
		return -1;
	*out = (int64_t)json_integer_value(v);
	return 0;
}

/* Compact UTF-8 serialisation (malloc'd), or NULL. */
char *
jsonutil_dump(const json_t *j)
{
	if (j == NULL)
		return NULL;
	return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}
