/*
 * fuzz_jsonutil.c: libFuzzer target for common/jsonutil.c, the strict JSON
 * input of both programs (login bodies, JWT headers and claims, relay
 * commands): jsonutil_depth_ok, jsonutil_parse_object and the typed
 * getters.
 *
 * Oracles: a parsed object passed the depth scan; its members read back
 * through jsonutil_get_str / jsonutil_get_int exactly as jansson holds
 * them; and its compact serialisation parses again, as strictly, to an
 * equal value (what the relay forwards must be what it accepted).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "jsonutil.h"
#include "util.h"

/* Every member through the getters, and a few names that are absent. */
static void
fuzz_jsonutil_getters(const json_t *obj)
{
	static const char *const absent[] = { "", "username", "password",
	    "type", "id", "exp" };
	const char	*key, *s;
	json_t		*v;
	int64_t		 n = 0;
	size_t		 i;

	json_object_foreach((json_t *)obj, key, v) {
		s = jsonutil_get_str(obj, key);
		FUZZ_CHECK(json_is_string(v) ? s == json_string_value(v) : s == NULL);
		if (s != NULL)
			FUZZ_CHECK(util_utf8_valid(s, json_string_length(v)));
		if (jsonutil_get_int(obj, key, &n) == 0)
			FUZZ_CHECK(json_is_integer(v) && n == json_integer_value(v));
		else
			FUZZ_CHECK(!json_is_integer(v));
	}
	for (i = 0; i < sizeof(absent) / sizeof(absent[0]); i++) {
		v = json_object_get(obj, absent[i]);
		FUZZ_CHECK(v != NULL || (jsonutil_get_str(obj, absent[i]) == NULL &&
		    jsonutil_get_int(obj, absent[i], &n) == -1));
	}
	/* Not an object: the getters refuse rather than crash. */
	FUZZ_CHECK(jsonutil_get_str(NULL, "a") == NULL);
	FUZZ_CHECK(jsonutil_get_int(NULL, "a", &n) == -1);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*buf = (const char *)data, *reason = NULL;
	json_t		*obj, *again;
	char		*dump;
	int		 depth;

	/* The flat scan is monotonic in its limit. */
	for (depth = 0; depth <= JSONUTIL_MAX_DEPTH + 1; depth++)
		if (jsonutil_depth_ok(buf, size, depth))
			break;
	if (depth <= JSONUTIL_MAX_DEPTH)
		FUZZ_CHECK(jsonutil_depth_ok(buf, size, JSONUTIL_MAX_DEPTH));

	obj = jsonutil_parse_object(buf, size, JSONUTIL_MAX_DEPTH, &reason);
	if (obj == NULL) {
		FUZZ_CHECK(reason != NULL && *reason != '\0');
		return 0;
	}
	FUZZ_CHECK(reason == NULL);
	FUZZ_CHECK(json_is_object(obj));
	FUZZ_CHECK(util_utf8_valid(buf, size));
	FUZZ_CHECK(jsonutil_depth_ok(buf, size, JSONUTIL_MAX_DEPTH));
	fuzz_jsonutil_getters(obj);

	dump = jsonutil_dump(obj);
	FUZZ_CHECK(dump != NULL);
	again = jsonutil_parse_object(dump, strlen(dump), JSONUTIL_MAX_DEPTH,
	    &reason);
	FUZZ_CHECK(again != NULL);
	FUZZ_CHECK(json_equal(obj, again));
	json_decref(again);
	free(dump);
	json_decref(obj);
	return 0;
}
