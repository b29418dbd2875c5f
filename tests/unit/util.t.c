/*
 * util.t.c: unit tests of common/util.c: base64url, UTF-8, SHA-256, hex,
 * RFC 3339 times, durations, sizes and integers.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "util.h"

static void
test_b64url(void)
{
	static const struct { const char *in, *out; } vec[] = {
		/* RFC 4648 §10 vectors, without padding. */
		{ "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" },
		{ "foobar", "Zm9vYmFy" },
		/* The URL-safe alphabet: 0xfb 0xff -> "-_8". */
		{ "\xfb\xff", "-_8" },
	};
	static const char *const bad[] = {
		"Zg==", "Zm9v=", "Z", "Zm9vY", "Zm+v", "Zm/v", "Zm 9v",
		"Zh",	/* non-zero unused bits: not canonical */
		"Zm9", "-_9",
		"Zm9v\n",
	};
	unsigned char	 bin[256], dec[256];
	char		 enc[400], small[4];
	size_t		 i;
	int		 n, rt = 1;

	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		n = util_b64url_encode(vec[i].in, strlen(vec[i].in), enc, sizeof(enc));
		is_str(enc, vec[i].out, "b64url encode vector");
		is_int(n, (int)strlen(vec[i].out), "b64url encode length");
		n = util_b64url_decode(vec[i].out, strlen(vec[i].out), dec, sizeof(dec));
		ok(n == (int)strlen(vec[i].in) && memcmp(dec, vec[i].in, (size_t)n) == 0,
		    "b64url decode '%s'", vec[i].out);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(util_b64url_decode(bad[i], strlen(bad[i]), dec, sizeof(dec)),
		    -1, "b64url decode rejects non-canonical or foreign input");
	/* Round trip over every length 0..255 with all byte values. */
	for (i = 0; i < sizeof(bin); i++)
		bin[i] = (unsigned char)(i * 37 + 11);
	for (i = 0; i <= sizeof(bin); i++) {
		n = util_b64url_encode(bin, i, enc, sizeof(enc));
		if (n != (int)util_b64url_len(i) ||
		    util_b64url_decode(enc, (size_t)n, dec, sizeof(dec)) != (int)i ||
		    memcmp(dec, bin, i) != 0)
			rt = 0;
	}
	ok(rt, "b64url round trip for lengths 0..256");
	is_int(util_b64url_encode("abc", 3, small, sizeof(small)), -1,
	    "b64url encode refuses a too small buffer (needs room for NUL)");
	is_int(util_b64url_decode("Zm9vYmFy", 8, dec, 5), -1,
	    "b64url decode refuses a too small buffer");
}

static void
test_utf8(void)
{
	static const struct { const char *s; size_t n; int valid; const char *name; } vec[] = {
		{ "", 0, 1, "empty" },
		{ "plain ascii", 11, 1, "ASCII" },
		{ "caf\xc3\xa9", 5, 1, "2-byte e-acute" },
		{ "\xe2\x82\xac", 3, 1, "3-byte euro sign" },
		{ "\xf0\x9f\x98\x80", 4, 1, "4-byte emoji" },
		{ "\xef\xbf\xbf", 3, 1, "U+FFFF" },
		{ "\xf4\x8f\xbf\xbf", 4, 1, "U+10FFFF (the last code point)" },
		{ "\xed\x9f\xbf", 3, 1, "U+D7FF (just below surrogates)" },
		{ "\xee\x80\x80", 3, 1, "U+E000 (just above surrogates)" },
		{ "a\0b", 3, 1, "NUL is valid UTF-8" },
		{ "\xc0\xaf", 2, 0, "overlong '/' (C0 AF)" },
		{ "\xc1\xbf", 2, 0, "overlong C1" },
		{ "\xe0\x80\xaf", 3, 0, "overlong 3-byte '/'" },
		{ "\xe0\x9f\xbf", 3, 0, "overlong 3-byte U+07FF" },
		{ "\xf0\x80\x80\xaf", 4, 0, "overlong 4-byte '/'" },
		{ "\xf0\x8f\xbf\xbf", 4, 0, "overlong 4-byte U+FFFF" },
		{ "\xed\xa0\x80", 3, 0, "surrogate U+D800" },
		{ "\xed\xbf\xbf", 3, 0, "surrogate U+DFFF" },
		{ "\xf4\x90\x80\x80", 4, 0, "U+110000 (above the range)" },
		{ "\xf5\x80\x80\x80", 4, 0, "lead byte F5" },
		{ "\xff", 1, 0, "byte FF" },
		{ "\x80", 1, 0, "lone continuation byte" },
		{ "\xc3", 1, 0, "truncated 2-byte sequence" },
		{ "\xe2\x82", 2, 0, "truncated 3-byte sequence" },
		{ "\xf0\x9f\x98", 3, 0, "truncated 4-byte sequence" },
		{ "\xe2\x28\xa1", 3, 0, "bad continuation byte" },
		{ "ok\xc3(", 4, 0, "bad second byte after valid text" },
	};
	size_t	i;

	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++)
		is_int(util_utf8_valid(vec[i].s, vec[i].n), vec[i].valid, vec[i].name);
}

static void
test_sha256_hex(void)
{
	unsigned char	h[UTIL_SHA256_LEN];
	char		hex[2 * UTIL_SHA256_LEN + 1];

	util_sha256("abc", 3, h);
	util_hex(h, sizeof(h), hex);
	is_str(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	    "sha256('abc') (FIPS 180-2 vector)");
	util_sha256("", 0, h);
	util_hex(h, sizeof(h), hex);
	is_str(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	    "sha256('')");
}

static void
test_rfc3339(void)
{
	char	out[25];

	util_rfc3339(0, out);
	is_str(out, "1970-01-01T00:00:00.000Z", "rfc3339 epoch");
	util_rfc3339(1795687200123LL, out);
	is_str(out, "2026-11-26T10:00:00.123Z", "rfc3339 with milliseconds");
	util_rfc3339(951782400999LL, out);
	is_str(out, "2000-02-29T00:00:00.999Z", "rfc3339 leap day");
	util_rfc3339(-1, out);
	is_str(out, "1969-12-31T23:59:59.999Z", "rfc3339 before the epoch");
	util_rfc3339(INT64_MAX, out);
	is_int((int)strlen(out), 24, "rfc3339 clamps far-future times to 24 chars");
}

static void
test_random(void)
{
	unsigned char	a[32], b[32], zero[32] = { 0 };

	ok(util_random(a, sizeof(a)) == 0 && util_random(b, sizeof(b)) == 0,
	    "util_random succeeds");
	ok(memcmp(a, b, sizeof(a)) != 0 && memcmp(a, zero, sizeof(a)) != 0,
	    "util_random returns different non-zero bytes");
	ok(util_ct_compare(a, a, sizeof(a)) == 0 && util_ct_compare(a, b, sizeof(a)) != 0,
	    "util_ct_compare equal / different");
}

static void
test_duration(void)
{
	static const struct { const char *in; int64_t ms; } good[] = {
		{ "300", 300000 }, { "300s", 300000 }, { "5m", 300000 },
		{ "2h", 7200000 }, { "7d", 604800000 }, { "250ms", 250 },
		{ "0", 0 }, { "0ms", 0 }, { "30S", 30000 }, { "1M", 60000 },
		{ "106751991167d", 106751991167LL * 86400000 },
		{ "9223372036854775807ms", INT64_MAX },
	};
	static const char *const bad[] = {
		"", "s", "-5s", "+5s", "5 s", " 5s", "5s ", "5x", "5sec", "1.5h",
		"5mss", "0x10", "106751991168d", "9223372036854775808ms",
		"99999999999999999999",
	};
	size_t	i;
	int64_t	v;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = -1;
		ok(util_parse_duration(good[i].in, &v) == 0 && v == good[i].ms,
		    "duration '%s' = %lld ms", good[i].in, (long long)good[i].ms);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(util_parse_duration(bad[i], &v), -1, "duration rejects bad input");
}

static void
test_size(void)
{
	static const struct { const char *in; int64_t b; } good[] = {
		{ "65536", 65536 }, { "64k", 65536 }, { "64K", 65536 },
		{ "1m", 1048576 }, { "1M", 1048576 }, { "2g", 2147483648LL },
		{ "2G", 2147483648LL }, { "0", 0 }, { "64kb", 65536 },
		{ "1MiB", 1048576 }, { "8388607t", 8388607LL << 40 },
	};
	static const char *const bad[] = {
		"", "k", "-1k", "1.5k", "64 k", "64kk", "1x", "8388608t",
		"9223372036854775808", "0x40",
	};
	size_t	i;
	int64_t	v;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = -1;
		ok(util_parse_size(good[i].in, &v) == 0 && v == good[i].b,
		    "size '%s' = %lld bytes", good[i].in, (long long)good[i].b);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(util_parse_size(bad[i], &v), -1, "size rejects bad input");
}

static void
test_int64(void)
{
	int64_t	v;

	ok(util_parse_int64("42", &v) == 0 && v == 42, "int64 '42'");
	ok(util_parse_int64("-17", &v) == 0 && v == -17, "int64 '-17'");
	ok(util_parse_int64("9223372036854775807", &v) == 0 && v == INT64_MAX,
	    "int64 max");
	ok(util_parse_int64("-9223372036854775808", &v) == 0 && v == INT64_MIN,
	    "int64 min");
	is_int(util_parse_int64("9223372036854775808", &v), -1, "int64 overflow");
	is_int(util_parse_int64("-9223372036854775809", &v), -1, "int64 underflow");
	is_int(util_parse_int64("", &v), -1, "int64 empty");
	is_int(util_parse_int64("-", &v), -1, "int64 lone minus");
	is_int(util_parse_int64(" 1", &v), -1, "int64 leading space");
	is_int(util_parse_int64("1 ", &v), -1, "int64 trailing space");
	is_int(util_parse_int64("+1", &v), -1, "int64 plus sign");
	is_int(util_parse_int64("12a", &v), -1, "int64 trailing junk");
}

static void
test_strlcpy(void)
{
	char	buf[4];

	is_int((int64_t)util_strlcpy(buf, "abcdef", sizeof(buf)), 6,
	    "strlcpy returns the source length");
	is_str(buf, "abc", "strlcpy truncates and terminates");
}

int
main(void)
{
	test_b64url();
	test_utf8();
	test_sha256_hex();
	test_rfc3339();
	test_random();
	test_duration();
	test_size();
	test_int64();
	test_strlcpy();
	done_testing();
	return exit_status();
}
