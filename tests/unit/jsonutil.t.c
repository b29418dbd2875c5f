/*
 * jsonutil.t.c: unit tests of common/jsonutil.c: nesting depth, strict
 * object parsing (duplicates, trailing data, UTF-8), typed getters.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "jsonutil.h"
#include "tap.h"

static json_t *
parse(const char *s, const char **why)
{
	return jsonutil_parse_object(s, strlen(s), JSONUTIL_MAX_DEPTH, why);
}

static void
test_depth(void)
{
	char	deep[200];
	int	i;

	is_int(jsonutil_depth_ok("{\"a\":[1,{\"b\":2}]}", 17, 3), 1, "depth 3 fits 3");
	is_int(jsonutil_depth_ok("{\"a\":[1,{\"b\":2}]}", 17, 2), 0, "depth 3 exceeds 2");
	is_int(jsonutil_depth_ok("{\"a\":\"[[[[{{{{\"}", 16, 1), 1,
	    "brackets inside strings do not count");
	is_int(jsonutil_depth_ok("{\"a\\\"[[[\":1}", 13, 1), 1,
	    "escaped quote does not end the string");
	is_int(jsonutil_depth_ok("{\"a\\\\\":[[1]]}", 14, 2), 0,
	    "escaped backslash ends the string before brackets");
	is_int(jsonutil_depth_ok("[][][][]", 8, 1), 1, "siblings do not add depth");

	for (i = 0; i < 100; i++)
		deep[i] = '[';
	for (i = 100; i < 200; i++)
		deep[i] = ']';
	is_int(jsonutil_depth_ok(deep, sizeof(deep), JSONUTIL_MAX_DEPTH), 0,
	    "100 nested arrays exceed the maximum");
}

static void
test_parse(void)
{
	static const struct { const char *in, *why; } bad[] = {
		{ "{\"a\":1,\"a\":2}", "duplicate member" },
		{ "{\"a\":{\"b\":1,\"b\":1}}", "duplicate member" },
		{ "{\"a\":1} x", "invalid JSON" },
		{ "{\"a\":1}{}", "invalid JSON" },
		{ "[1,2]", "not an object" },
		{ "\"str\"", "not an object" },
		{ "42", "not an object" },
		{ "", "invalid JSON" },
		{ "{\"a\":\"\xc0\xaf\"}", "invalid UTF-8" },
		{ "{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8" },
		{ "{\"a\":\"\\u0000\"}", "invalid JSON" },
		{ "{\"a\":1,}", "invalid JSON" },
		{ "{'a':1}", "invalid JSON" },
		{ "{\"a\":99999999999999999999}", "invalid JSON" },
		{ "{\"a\":NaN}", "invalid JSON" },
	};
	const char	*why;
	json_t		*j;
	size_t		 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		j = parse(bad[i].in, &why);
		ok(j == NULL, "rejects %s", bad[i].in);
		is_str(why, bad[i].why, "  with the reason");
		json_decref(j);
	}
	j = jsonutil_parse_object("{\"a\":1}\0", 8, JSONUTIL_MAX_DEPTH, &why);
	ok(j == NULL, "rejects a NUL byte after the object");
	json_decref(j);
	j = jsonutil_parse_object("{\"a\":\"x\0y\"}", 11, JSONUTIL_MAX_DEPTH, &why);
	ok(j == NULL, "rejects a raw NUL byte inside a string");
	json_decref(j);
	j = parse("{\"a\":1e400}", &why);
	ok(j == NULL, "rejects a number out of double range");
	json_decref(j);
	j = parse(" {\"a\":1} \n", &why);
	ok(j != NULL, "whitespace around the object is fine");
	json_decref(j);

	/* Exactly at and one past the limit. */
	j = jsonutil_parse_object("{\"a\":{\"b\":{}}}", 14, 3, &why);
	ok(j != NULL, "depth 3 accepted with max 3");
	json_decref(j);
	j = jsonutil_parse_object("{\"a\":{\"b\":{\"c\":[]}}}", 20, 3, &why);
	ok(j == NULL, "depth 4 refused with max 3");
	is_str(why, "too deep", "  reason 'too deep'");
}

static void
test_getters(void)
{
	const char	*why;
	json_t		*j;
	int64_t		 v = 7;
	char		*s;

	j = parse("{\"s\":\"x\",\"i\":42,\"neg\":-9223372036854775808,\"r\":1.0,"
	    "\"e\":1e3,\"n\":null,\"b\":true,\"is\":\"5\",\"u\":\"caf\\u00e9\"}", &why);
	if (!ok(j != NULL, "parse the getter fixture"))
		return;
	is_str(jsonutil_get_str(j, "s"), "x", "get_str of a string");
	is_str(jsonutil_get_str(j, "i"), NULL, "get_str of an integer is NULL");
	is_str(jsonutil_get_str(j, "missing"), NULL, "get_str of a missing member");
	is_str(jsonutil_get_str(j, "u"), "caf\xc3\xa9", "get_str decodes \\u escapes");
	ok(jsonutil_get_int(j, "i", &v) == 0 && v == 42, "get_int of 42");
	ok(jsonutil_get_int(j, "neg", &v) == 0 && v == INT64_MIN, "get_int of int64 min");
	is_int(jsonutil_get_int(j, "r", &v), -1, "get_int rejects 1.0 (a real)");
	is_int(jsonutil_get_int(j, "e", &v), -1, "get_int rejects 1e3 (a real)");
	is_int(jsonutil_get_int(j, "n", &v), -1, "get_int rejects null");
	is_int(jsonutil_get_int(j, "b", &v), -1, "get_int rejects true");
	is_int(jsonutil_get_int(j, "is", &v), -1, "get_int rejects a numeric string");
	is_int(jsonutil_get_int(j, "missing", &v), -1, "get_int of a missing member");
	json_decref(j);

	j = json_pack("{s:s, s:i}", "a", "\xc3\xa9\"", "b", 1);
	s = jsonutil_dump(j);
	is_str(s, "{\"a\":\"\xc3\xa9\\\"\",\"b\":1}", "dump is compact UTF-8 in insertion order");
	free(s);
	json_decref(j);
}

int
main(void)
{
	test_depth();
	test_parse();
	test_getters();
	done_testing();
	return exit_status();
}
