/*
 * fuzz_util.c: libFuzzer target for the byte-level parsers of common/util.c
 * that see client input: util_b64url_decode (JWT segments, session
 * cookies), util_utf8_valid (every text a client sends), and the unit
 * parsers util_parse_duration, util_parse_size, util_parse_int64 (settings,
 * and "sub" in tokens), plus util_rfc3339 on whatever 8 bytes come first.
 *
 * Besides the sanitizers, each call is held to an oracle: a decoded
 * base64url string re-encodes to exactly the input (one accepted spelling
 * per byte string), UTF-8 validity agrees with an independent decoder
 * written here from RFC 3629, and util_parse_int64 agrees with strtoll.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "util.h"

/* RFC 3629 by code points: decode, then judge the value. */
static int
fuzz_util_utf8_ref(const uint8_t *s, size_t n)
{
	size_t		i = 0, k, len;
	uint32_t	cp, min;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if ((s[i] & 0xe0) == 0xc0) {
			len = 2, cp = s[i] & 0x1f, min = 0x80;
		} else if ((s[i] & 0xf0) == 0xe0) {
			len = 3, cp = s[i] & 0x0f, min = 0x800;
		} else if ((s[i] & 0xf8) == 0xf0) {
			len = 4, cp = s[i] & 0x07, min = 0x10000;
		} else
			return 0;
		if (n - i < len)
			return 0;
		for (k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

static void
fuzz_util_b64(const uint8_t *data, size_t size)
{
	unsigned char	*out = fuzz_malloc(size);
	char		*again;
	size_t		 cap = util_b64url_len(size) + 1;
	int		 n, m;

	n = util_b64url_decode((const char *)data, size, out, size);
	if (n >= 0) {
		FUZZ_CHECK((size_t)n <= size);
		FUZZ_CHECK((size_t)n == size / 4 * 3 + (size % 4 ? size % 4 - 1 : 0));
		again = fuzz_malloc(util_b64url_len((size_t)n) + 1);
		m = util_b64url_encode(out, (size_t)n, again,
		    util_b64url_len((size_t)n) + 1);
		FUZZ_CHECK(m >= 0 && (size_t)m == size);
		FUZZ_CHECK(memcmp(again, data, size) == 0);
		free(again);
		/* One byte too small an output buffer must be refused. */
		if (n > 0)
			FUZZ_CHECK(util_b64url_decode((const char *)data, size,
			    out, (size_t)n - 1) == -1);
	}
	free(out);

	/* Encoding arbitrary bytes decodes back to them. */
	again = fuzz_malloc(cap);
	m = util_b64url_encode(data, size, again, cap);
	FUZZ_CHECK(m >= 0 && (size_t)m == cap - 1 && strlen(again) == cap - 1);
	out = fuzz_malloc(size);
	FUZZ_CHECK(util_b64url_decode(again, (size_t)m, out, size) == (int)size);
	FUZZ_CHECK(size == 0 || memcmp(out, data, size) == 0);
	FUZZ_CHECK(util_b64url_encode(data, size, again, cap - 1) == -1);
	free(out);
	free(again);
}

static void
fuzz_util_numbers(const char *s)
{
	int64_t		 v = -1, w;
	long long	 ref;
	char		*end, buf[32];
	int		 r, digits;

	if (util_parse_duration(s, &v) == 0)
		FUZZ_CHECK(v >= 0 && s[0] >= '0' && s[0] <= '9');
	if (util_parse_size(s, &v) == 0)
		FUZZ_CHECK(v >= 0 && s[0] >= '0' && s[0] <= '9');

	/* util_parse_int64 against strtoll on the strings both should read. */
	r = util_parse_int64(s, &v);
	digits = s[0] != '\0' && strspn(s + (s[0] == '-'), "0123456789") ==
	    strlen(s + (s[0] == '-')) && s[s[0] == '-'] != '\0';
	FUZZ_CHECK(r == 0 ? digits : 1);
	if (digits) {
		errno = 0;
		ref = strtoll(s, &end, 10);
		FUZZ_CHECK(*end == '\0');
		FUZZ_CHECK(r == 0 ? (errno == 0 && ref == v) : errno == ERANGE);
	}
	if (r == 0) {
		snprintf(buf, sizeof(buf), "%lld", (long long)v);
		FUZZ_CHECK(util_parse_int64(buf, &w) == 0 && w == v);
	}
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
	char	*s, ts[25], hex[17];
	int64_t	 ms = 0;

	fuzz_util_b64(data, size);
	FUZZ_CHECK(!util_utf8_valid(data, size) == !fuzz_util_utf8_ref(data, size));

	s = fuzz_strndup(data, size);
	fuzz_util_numbers(s);
	free(s);

	memcpy(&ms, data, size < sizeof(ms) ? size : sizeof(ms));
	util_rfc3339(ms, ts);
	FUZZ_CHECK(strlen(ts) == 24 && ts[10] == 'T' && ts[23] == 'Z');
	util_hex(data, size < 8 ? size : 8, hex);
	FUZZ_CHECK(strlen(hex) == 2 * (size < 8 ? size : 8));
	return 0;
}
