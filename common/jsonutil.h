/*
 * jsonutil.h: strict JSON input for both programs, on top of jansson.
 *
 * jansson parses recursively, and the relay runs on civetweb threads with a
 * 100 KiB stack, so nesting depth is checked by a flat scan before jansson
 * sees a byte.  Duplicate object members are rejected (a client must not be
 * able to say two things at once).
 */
#ifndef PARLEY_JSONUTIL_H
#define PARLEY_JSONUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define JSONUTIL_MAX_DEPTH	16

/* Is the bracket nesting of (buf, len) at most max_depth?  Strings are skipped. */
int	jsonutil_depth_ok(const char *buf, size_t len, int max_depth);

/*
 * Parse one JSON object (nothing else, nothing after it): UTF-8 checked,
 * duplicates rejected, depth <= max_depth.  Returns a new reference, or NULL
 * with *reason set to a static string ("not an object", "too deep").
 */
json_t	*jsonutil_parse_object(const char *buf, size_t len, int max_depth,
	    const char **reason);

/* Member of the given type, or NULL / -1 when absent or of another type. */
const char *jsonutil_get_str(const json_t *obj, const char *key);
/* A JSON integer (not a float, not a string) fitting int64. 0 / -1. */
int	jsonutil_get_int(const json_t *obj, const char *key, int64_t *out);

/* Compact serialisation, malloc'd, or NULL on allocation failure. */
char	*jsonutil_dump(const json_t *);

#endif
