/*
 * token_mint.t.c: the hand-written JSON of the token hot path equals what
 * jansson writes.  jwtkey_mint builds HS256 tokens without libjwt: its
 * header and claims must be byte for byte jansson's compact, key-sorted
 * dump of the same members (what libjwt produced before), whatever the
 * name, sid, issuer and audience contain; the signature must be
 * HMAC-SHA256 as OpenSSL's one-shot HMAC() computes it; claims too long for
 * the fast path must still mint through libjwt; every jti must differ, also
 * between a process and its fork.  reply_json_str (the token reply's
 * relay_url) must escape as jansson does.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "log.h"
#include "tap.h"
#include "token.h"
#include "token_keys.h"

#define NOW	1795687200LL

static const char	secret[] = "0123456789abcdef0123456789abcdef-mint-test";

/* Decode segment n (0, 1, 2) of a token into out; its length or -1. */
static int
segment(const char *tok, int n, unsigned char *out, size_t outlen)
{
	const char	*s = tok, *e;

	while (n-- > 0) {
		if ((s = strchr(s, '.')) == NULL)
			return -1;
		s++;
	}
	e = strchr(s, '.');
	if (e == NULL)
		e = s + strlen(s);
	return util_b64url_decode(s, (size_t)(e - s), out, outlen);
}

/* jansson's dump of the claims libjwt used to write. */
static char *
expected_claims(const struct jwtkey_params *pp, int64_t sub, const char *name,
    const char *sid, const char *jti)
{
	char	 subs[24];
	json_t	*o;
	char	*s;

	snprintf(subs, sizeof(subs), "%lld", (long long)sub);
	o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s}",
	    "iss", pp->issuer, "aud", pp->audience, "sub", subs, "sid", sid,
	    "iat", (json_int_t)NOW, "nbf", (json_int_t)NOW,
	    "exp", (json_int_t)(NOW + pp->ttl_s), "jti", jti);
	if (o == NULL)
		return NULL;
	if (name != NULL)
		json_object_set_new(o, "name", json_string(name));
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return s;
}

/* Mint and check everything about one HS256 token. */
static void
check_mint(const struct jwtkeyset *ks, const struct jwtkey_params *pp,
    int64_t sub, const char *name, const char *sid, const char *what)
{
	unsigned char		 claims[8192], hdr[256], sig[64], want_sig[64];
	unsigned int		 wl = 0;
	char			 err[256], hdr_want[256], jti[64];
	char			*tok, *want = NULL, *dot2;
	json_t			*cj = NULL;
	struct jwtkey_claims	 cl;
	const char		*reason = "";
	int64_t			 exp = 0;
	int			 n, hl, sl;

	tok = jwtkey_mint(ks, pp, sub, name, sid, NOW, &exp, err, sizeof(err));
	if (!ok(tok != NULL, "%s: minted", what)) {
		diag("%s", err);
		return;
	}
	ok(exp == NOW + pp->ttl_s, "%s: exp returned", what);
	hl = segment(tok, 0, hdr, sizeof(hdr) - 1);
	snprintf(hdr_want, sizeof(hdr_want),
	    "{\"alg\":\"HS256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", jwtkey_kid(ks));
	ok(hl > 0 && (size_t)hl == strlen(hdr_want) &&
	    memcmp(hdr, hdr_want, (size_t)hl) == 0, "%s: header", what);

	n = segment(tok, 1, claims, sizeof(claims) - 1);
	if (n > 0) {
		claims[n] = '\0';
		cj = json_loads((char *)claims, JSON_REJECT_DUPLICATES, NULL);
	}
	util_strlcpy(jti, json_string_value(json_object_get(cj, "jti")) ?
	    json_string_value(json_object_get(cj, "jti")) : "", sizeof(jti));
	want = expected_claims(pp, sub, name, sid, jti);
	if (!ok(n > 0 && want != NULL && strlen(want) == (size_t)n &&
	    memcmp(claims, want, (size_t)n) == 0,
	    "%s: claims are jansson's sorted compact dump", what)) {
		diag("got:  %.*s", n > 0 ? n : 0, claims);
		diag("want: %s", want ? want : "(null)");
	}
	ok(strlen(jti) == 22, "%s: a 16-byte jti", what);

	dot2 = strrchr(tok, '.');
	sl = segment(tok, 2, sig, sizeof(sig));
	HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)tok,
	    dot2 ? (size_t)(dot2 - tok) : 0, want_sig, &wl);
	ok(sl == 32 && wl == 32 && memcmp(sig, want_sig, 32) == 0,
	    "%s: signature is OpenSSL's HMAC-SHA256", what);

	ok(jwtkey_verify(ks, pp, tok, NOW, &cl, &reason) == JWTKEY_OK &&
	    cl.sub == sub && strcmp(cl.sid, sid) == 0 &&
	    strcmp(cl.name, name ? name : "") == 0,
	    "%s: jwtkey_verify accepts it (%s)", what, reason);
	json_decref(cj);
	free(want);
	explicit_bzero(tok, strlen(tok));
	free(tok);
}

static void
test_claims(const struct jwtkeyset *ks)
{
	struct jwtkey_params	 pp = { "parley", "parley-relay", 300, 0 };
	struct jwtkey_params	 odd = { "https://chat.example.org/\"x\"\\",
	    "aud \x01 \xc3\xa9", 90, 0 };
	char			 longname[256], issuer[3000];

	check_mint(ks, &pp, 42, "Ann", "17", "plain");
	check_mint(ks, &pp, 1, NULL, "s", "no name");
	check_mint(ks, &pp, 9007199254740991LL, "quote\" back\\slash /",
	    "app-\"7\"", "quotes and backslashes");
	check_mint(ks, &pp, 3, "ctl \x01\x1f\t\n\r\b\f\x7f end", "x\ty",
	    "control characters");
	check_mint(ks, &pp, 4, "\xc3\xbc\xc3\xb1\xc3\xaf \xe2\x82\xac \xf0\x9f\x98\x80",
	    "s\xc3\xa9", "UTF-8");
	memset(longname, '\x01', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	check_mint(ks, &pp, 5, longname, "s", "255 control characters");
	check_mint(ks, &odd, 6, "o", "s", "issuer and audience to escape");
	/* Too long for the fast path's buffer: libjwt mints it. */
	memset(issuer, 'i', sizeof(issuer) - 1);
	issuer[sizeof(issuer) - 1] = '\0';
	odd.issuer = issuer;
	check_mint(ks, &odd, 7, "long", "s", "a 3000-byte issuer (libjwt path)");
}

static void
test_jti(const struct jwtkeyset *ks)
{
	struct jwtkey_params	 pp = { "parley", "parley-relay", 300, 0 };
	static char		 seen[2000][24];
	unsigned char		 claims[1024];
	char			 err[128], mine[24] = "", theirs[24] = "";
	char			*tok;
	json_t			*cj;
	int			 i, j, n, dup = 0, fds[2];
	pid_t			 pid;
	ssize_t			 r;

	for (i = 0; i < 2000; i++) {
		tok = jwtkey_mint(ks, &pp, 1, "x", "s", NOW, NULL, err, sizeof(err));
		n = tok ? segment(tok, 1, claims, sizeof(claims) - 1) : -1;
		seen[i][0] = '\0';
		if (n > 0) {
			claims[n] = '\0';
			cj = json_loads((char *)claims, 0, NULL);
			util_strlcpy(seen[i], json_string_value(json_object_get(cj,
			    "jti")) ? json_string_value(json_object_get(cj, "jti")) :
			    "", sizeof(seen[i]));
			json_decref(cj);
		}
		free(tok);
	}
	for (i = 0; i < 2000; i++)
		for (j = i + 1; j < 2000; j++)
			if (seen[i][0] == '\0' || strcmp(seen[i], seen[j]) == 0)
				dup++;
	is_int(dup, 0, "2000 tokens, 2000 different jti");

	/* A child process must not reuse its parent's buffered randomness. */
	if (pipe(fds) < 0) {
		ok(0, "pipe");
		return;
	}
	fflush(stdout);
	if ((pid = fork()) == 0) {
		tok = jwtkey_mint(ks, &pp, 1, "x", "s", NOW, NULL, err, sizeof(err));
		n = tok ? segment(tok, 1, claims, sizeof(claims) - 1) : -1;
		if (n > 0) {
			claims[n] = '\0';
			cj = json_loads((char *)claims, 0, NULL);
			util_strlcpy(theirs, json_string_value(json_object_get(cj,
			    "jti")) ? json_string_value(json_object_get(cj, "jti")) :
			    "", sizeof(theirs));
		}
		r = write(fds[1], theirs, sizeof(theirs));
		_exit(r == (ssize_t)sizeof(theirs) ? 0 : 1);
	}
	close(fds[1]);
	tok = jwtkey_mint(ks, &pp, 1, "x", "s", NOW, NULL, err, sizeof(err));
	n = tok ? segment(tok, 1, claims, sizeof(claims) - 1) : -1;
	if (n > 0) {
		claims[n] = '\0';
		cj = json_loads((char *)claims, 0, NULL);
		util_strlcpy(mine, json_string_value(json_object_get(cj, "jti")) ?
		    json_string_value(json_object_get(cj, "jti")) : "",
		    sizeof(mine));
		json_decref(cj);
	}
	free(tok);
	r = read(fds[0], theirs, sizeof(theirs));
	close(fds[0]);
	waitpid(pid, NULL, 0);
	ok(r == (ssize_t)sizeof(theirs) && mine[0] != '\0' && theirs[0] != '\0' &&
	    strcmp(mine, theirs) != 0,
	    "parent and forked child mint different jti (%s, %s)", mine, theirs);
}

static void
test_json_str(void)
{
	static const char *const strs[] = {
		"", "plain", "wss://chat.example.org/ws?a=1&b=\"2\"",
		"back\\slash", "\x01\x02\x1f\x7f", "\t\n\r\b\f",
		"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "</script>",
	};
	char	 buf[256], *want;
	json_t	*j;
	size_t	 i, len;
	int	 same = 0;

	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		j = json_string(strs[i]);
		want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
		len = 3;
		memcpy(buf, "x:[", 3);
		if (reply_json_str(buf, sizeof(buf), &len, strs[i]) == 0 &&
		    want != NULL && strcmp(buf + 3, want) == 0 &&
		    len == 3 + strlen(want))
			same++;
		else
			diag("%zu: got %s want %s", i, buf + 3, want);
		free(want);
		json_decref(j);
	}
	is_int(same, (int)(sizeof(strs) / sizeof(strs[0])),
	    "reply_json_str escapes as jansson does");
	len = 2;
	ok(reply_json_str(buf, 8, &len, "abcdef") < 0 && len == 2,
	    "reply_json_str: too long for the buffer is -1, length unchanged");
	len = 0;
	ok(reply_json_str(buf, 8, &len, "abcde") == 0 && len == 7 &&
	    strcmp(buf, "\"abcde\"") == 0, "reply_json_str: exactly fits");
}

int
main(void)
{
	struct jwtkeyset	*ks;
	const char		*file;
	char			 err[256];

	log_init("token_mint.t", LOG_LEVEL_ERROR);
	keys_setup();
	file = keys_write("hs.key", secret, strlen(secret), 0600);
	ks = jwtkey_load("HS256", file, NULL, 1, err, sizeof(err));
	if (!ok(ks != NULL, "HS256 key set")) {
		diag("%s", err);
		keys_teardown();
		return exit_status();
	}
	test_claims(ks);
	test_jti(ks);
	test_json_str();
	jwtkey_free(ks);
	keys_teardown();
	done_testing();
	return exit_status();
}
