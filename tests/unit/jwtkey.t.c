/*
 * jwtkey.t.c: unit tests of common/jwtkey.c.
 *
 * Keys are generated at test time with OpenSSL into a private temporary
 * directory.  Tokens for the rejection cases are forged here with OpenSSL's
 * HMAC (not with libjwt), each with a valid signature, so every case fails
 * for the reason it names and not because the signature is wrong.  Minted
 * RS256 and ES256 tokens are also checked with OpenSSL directly: an ES256
 * signature must be the 64-byte R||S of RFC 7518 §3.4.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "jwtkey.h"
#include "tap.h"
#include "util.h"

#define NOW	1795687200LL	/* 2026-11-26T10:00:00Z */

static char	dir[] = "/tmp/parley-jwtkey-test-XXXXXX";
static const char hs_secret[] = "0123456789abcdef0123456789abcdef-current";
static const char hs_old[] = "fedcba9876543210fedcba9876543210-previous";

static const struct jwtkey_params params = {
	.issuer = "parley", .audience = "parley-relay", .ttl_s = 300,
	.leeway_s = 5,
};

static char *
path(const char *name)
{
	static char	buf[8][300];
	static int	i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

static void
write_file(const char *name, const void *data, size_t len, mode_t mode)
{
	FILE	*fp = fopen(path(name), "w");

	fwrite(data, 1, len, fp);
	fclose(fp);
	chmod(path(name), mode);
}

static void
write_key(const char *name, EVP_PKEY *pk, int private, mode_t mode)
{
	FILE	*fp = fopen(path(name), "w");

	if (private)
		PEM_write_PrivateKey(fp, pk, NULL, NULL, 0, NULL, NULL);
	else
		PEM_write_PUBKEY(fp, pk);
	fclose(fp);
	chmod(path(name), mode);
}

static char *
read_text(const char *name)
{
	static char	buf[8192];
	FILE		*fp = fopen(path(name), "r");
	size_t		 n = fread(buf, 1, sizeof(buf) - 1, fp);

	fclose(fp);
	buf[n] = '\0';
	return buf;
}

static EVP_PKEY	*rsa_key, *ec_key;

static void
make_keys(void)
{
	EVP_PKEY	*k;
	char		 buf[128];

	snprintf(buf, sizeof(buf), "%s\n", hs_secret);
	write_file("hs.key", buf, strlen(buf), 0600);
	snprintf(buf, sizeof(buf), "%s\n", hs_old);
	write_file("hs-old.key", buf, strlen(buf), 0600);
	write_file("hs32.key", "0123456789abcdef0123456789abcdef\n", 33, 0640);
	write_file("hs31.key", "0123456789abcdef0123456789abcde\n", 32, 0600);
	write_file("hs644.key", buf, strlen(buf), 0644);
	write_file("hs604.key", buf, strlen(buf), 0604);
	write_file("junk.pem", "-----BEGIN PRIVATE KEY-----\nnope\n", 33, 0600);

	rsa_key = EVP_RSA_gen(2048);
	write_key("rsa.pem", rsa_key, 1, 0600);
	write_key("rsa.pub", rsa_key, 0, 0600);
	k = EVP_RSA_gen(2048);
	write_key("rsa-old.pem", k, 1, 0600);
	write_key("rsa-old.pub", k, 0, 0600);
	EVP_PKEY_free(k);
	k = EVP_RSA_gen(1024);
	write_key("rsa1024.pem", k, 1, 0600);
	EVP_PKEY_free(k);

	ec_key = EVP_EC_gen("P-256");
	write_key("ec.pem", ec_key, 1, 0600);
	write_key("ec.pub", ec_key, 0, 0600);
	write_key("ec644.pem", ec_key, 1, 0644);
	k = EVP_EC_gen("P-384");
	write_key("ec384.pem", k, 1, 0600);
	EVP_PKEY_free(k);
}

static struct jwtkeyset *
load(const char *alg, const char *files, int want_private, char *err, size_t errlen)
{
	char	list[2048] = "", *save = NULL, *f, copy[1024];

	/* Names in `files` are relative to the test directory. */
	util_strlcpy(copy, files, sizeof(copy));
	for (f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
		if (list[0])
			strcat(list, ",");
		strcat(list, path(f));
	}
	return jwtkey_load(alg, list, NULL, want_private, err, errlen);
}

static void
b64(const void *in, size_t n, char *out, size_t outlen)
{
	util_b64url_encode(in, n, out, outlen);
}

/* header.payload.HMAC(md) as a malloc'd token. */
static char *
forge(const char *hdr, const char *pl, const EVP_MD *md, const char *secret)
{
	char		*tok = malloc(40000);
	unsigned char	 mac[64];
	unsigned int	 maclen = 0;
	size_t		 n;

	b64(hdr, strlen(hdr), tok, 20000);
	n = strlen(tok);
	tok[n++] = '.';
	b64(pl, strlen(pl), tok + n, 20000);
	n = strlen(tok);
	HMAC(md, secret, (int)strlen(secret), (unsigned char *)tok, n, mac, &maclen);
	tok[n++] = '.';
	b64(mac, maclen, tok + n, 200);
	return tok;
}

static char *
forge_hs(const char *hdr, const char *pl)
{
	return forge(hdr, pl, EVP_sha256(), hs_secret);
}

#define HDR	"{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define CLAIMS(extra) "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\"," \
	"\"name\":\"Ann\",\"sid\":\"s1\",\"iat\":1795687200,\"nbf\":1795687200," \
	"\"exp\":1795687500,\"jti\":\"j1\"" extra "}"

static void
check(const struct jwtkeyset *ks, const char *tok, int want, const char *want_reason,
    const char *name)
{
	struct jwtkey_claims	cl;
	const char		*why = NULL;
	int			 r;

	r = jwtkey_verify(ks, &params, tok, NOW, &cl, &why);
	if (!ok(r == want && (want_reason == NULL || (why && strcmp(why, want_reason) == 0)),
	    "%s", name))
		diag("  got %d '%s', want %d '%s'", r, why ? why : "(null)", want,
		    want_reason ? want_reason : "");
}

static void
check_forged(const struct jwtkeyset *ks, const char *hdr, const char *pl, int want,
    const char *want_reason, const char *name)
{
	char	*tok = forge_hs(hdr, pl);

	check(ks, tok, want, want_reason, name);
	free(tok);
}

/* Replace one segment (0, 1, 2) of a token with text. */
static char *
with_segment(const char *tok, int seg, const char *text)
{
	char		*out = malloc(strlen(tok) + strlen(text) + 4);
	const char	*p = tok, *dot;
	int		 i;

	out[0] = '\0';
	for (i = 0; i < 3; i++) {
		dot = strchr(p, '.');
		if (i)
			strcat(out, ".");
		if (i == seg)
			strcat(out, text);
		else
		{
			size_t len = strlen(out), k = dot ? (size_t)(dot - p) : strlen(p);
			memcpy(out + len, p, k);
			out[len + k] = '\0';
		}
		p = dot ? dot + 1 : p + strlen(p);
	}
	return out;
}

static void
test_hs_rejections(void)
{
	struct jwtkeyset	*ks;
	char			 err[512], seg[20000], big[9000], deep[200], *tok, *t2;
	const char		*pem;
	int			 i;

	ks = load("HS256", "hs.key", 1, err, sizeof(err));
	if (!ok(ks != NULL, "load HS256 key")) {
		diag("%s", err);
		return;
	}

	check_forged(ks, HDR, CLAIMS(""), JWTKEY_OK, "ok", "a forged-here valid token verifies (control)");
	check_forged(ks, "{\"alg\":\"HS256\"}", CLAIMS(""), JWTKEY_OK, NULL, "typ is optional");

	/* Algorithm pinning. */
	check_forged(ks, "{\"alg\":\"none\"}", CLAIMS(""), JWTKEY_INVALID, "alg mismatch",
	    "alg none with a signature");
	tok = forge_hs("{\"alg\":\"none\"}", CLAIMS(""));
	t2 = with_segment(tok, 2, "");
	check(ks, t2, JWTKEY_INVALID, NULL, "alg none with an empty signature");
	free(t2);
	free(tok);
	check_forged(ks, "{\"alg\":\"None\"}", CLAIMS(""), JWTKEY_INVALID, "alg mismatch", "alg None");
	check_forged(ks, "{\"alg\":\"hs256\"}", CLAIMS(""), JWTKEY_INVALID, "alg mismatch", "alg hs256");
	check_forged(ks, "{\"typ\":\"JWT\"}", CLAIMS(""), JWTKEY_INVALID, "alg mismatch", "alg missing");
	check_forged(ks, "{\"alg\":256}", CLAIMS(""), JWTKEY_INVALID, "alg mismatch", "alg not a string");
	tok = forge("{\"alg\":\"HS384\"}", CLAIMS(""), EVP_sha384(), hs_secret);
	check(ks, tok, JWTKEY_INVALID, "alg mismatch", "HS384 signed with the secret");
	free(tok);
	tok = forge("{\"alg\":\"HS512\"}", CLAIMS(""), EVP_sha512(), hs_secret);
	check(ks, tok, JWTKEY_INVALID, "alg mismatch", "HS512 signed with the secret");
	free(tok);
	check_forged(ks, "{\"alg\":\"RS256\"}", CLAIMS(""), JWTKEY_INVALID, "alg mismatch",
	    "RS256 header against an HMAC key");
	check_forged(ks, "{\"alg\":\"HS256\",\"alg\":\"none\"}", CLAIMS(""), JWTKEY_INVALID,
	    "duplicate member", "duplicated header member (alg)");
	check_forged(ks, "{\"alg\":\"none\",\"alg\":\"HS256\"}", CLAIMS(""), JWTKEY_INVALID,
	    "duplicate member", "duplicated header member, last one HS256");
	check_forged(ks, "{\"alg\":\"HS256\",\"typ\":\"JWS\"}", CLAIMS(""), JWTKEY_INVALID,
	    "bad typ", "typ other than JWT");
	check_forged(ks, "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", CLAIMS(""), JWTKEY_INVALID,
	    NULL, "crit header refused");
	check_forged(ks, "{\"alg\":\"HS256\",\"kid\":\"nope\"}", CLAIMS(""), JWTKEY_INVALID,
	    "unknown kid", "unknown kid");
	snprintf(seg, sizeof(seg), "{\"alg\":\"HS256\",\"kid\":\"%s\"}", jwtkey_kid(ks));
	check_forged(ks, seg, CLAIMS(""), JWTKEY_OK, NULL, "known kid");
	check_forged(ks, "[\"alg\",\"HS256\"]", CLAIMS(""), JWTKEY_INVALID, NULL,
	    "header not an object");

	/* Claims. */
	check_forged(ks, HDR, "{\"iss\":\"evil\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"exp\":1795687500}", JWTKEY_INVALID, "bad issuer", "wrong iss");
	check_forged(ks, HDR, "{\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"exp\":1795687500}", JWTKEY_INVALID, "bad issuer", "iss missing");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"other\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"exp\":1795687500}", JWTKEY_INVALID, "bad audience", "wrong aud");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":[\"x\",\"parley-relay\"],"
	    "\"sub\":\"42\",\"sid\":\"s1\",\"exp\":1795687500}", JWTKEY_OK, NULL,
	    "aud array containing ours");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":[\"x\",\"y\"],"
	    "\"sub\":\"42\",\"sid\":\"s1\",\"exp\":1795687500}", JWTKEY_INVALID,
	    "bad audience", "aud array without ours");
	{
		static const char *const subs[] = {
			"42", "\"abc\"", "\"-1\"", "\"0\"", "\"042\"", "\"\"",
			"\"+42\"", "\"4 2\"", "\"9223372036854775808\"", "null",
			"[\"42\"]",
		};
		char pl[400], name[100];
		size_t k;

		for (k = 0; k < sizeof(subs) / sizeof(subs[0]); k++) {
			snprintf(pl, sizeof(pl), "{\"iss\":\"parley\",\"aud\":\"parley-relay\","
			    "\"sub\":%s,\"sid\":\"s1\",\"exp\":1795687500}", subs[k]);
			snprintf(name, sizeof(name), "sub %s refused", subs[k]);
			check_forged(ks, HDR, pl, JWTKEY_INVALID, "bad sub", name);
		}
	}
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\"}", JWTKEY_INVALID, "missing exp", "exp missing");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"exp\":\"1795687500\"}", JWTKEY_INVALID, "bad time claim",
	    "exp a string");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"exp\":1795687500.0}", JWTKEY_INVALID, "bad time claim",
	    "exp a real");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"exp\":1795687500,\"nbf\":null}", JWTKEY_INVALID, "bad time claim",
	    "nbf null");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"exp\":1795687100}", JWTKEY_EXPIRED, "token expired",
	    "exp in the past: expired");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"exp\":1795687195}", JWTKEY_EXPIRED, NULL,
	    "exp exactly now - leeway: expired");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"exp\":1795687196}", JWTKEY_OK, NULL,
	    "exp within the leeway: ok");
	tok = forge("{\"alg\":\"HS256\"}", "{\"iss\":\"parley\",\"aud\":\"parley-relay\","
	    "\"sub\":\"42\",\"sid\":\"s1\",\"exp\":1795687100}", EVP_sha256(), hs_old);
	check(ks, tok, JWTKEY_INVALID, "bad signature",
	    "expired with a bad signature is invalid, not expired");
	free(tok);
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"exp\":1795687500,\"nbf\":1795687206}", JWTKEY_INVALID,
	    "token not yet valid", "nbf in the future");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"exp\":1795687500,\"nbf\":1795687205}", JWTKEY_OK, NULL,
	    "nbf within the leeway");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"exp\":1795687500,\"iat\":1795690000}", JWTKEY_INVALID,
	    NULL, "iat in the future");
	check_forged(ks, HDR, CLAIMS(",\"sub\":\"1\""), JWTKEY_INVALID, "duplicate member",
	    "duplicated claim (sub)");
	check_forged(ks, HDR, CLAIMS(",\"exp\":9999999999"), JWTKEY_INVALID,
	    "duplicate member", "duplicated claim (exp)");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"exp\":1795687500}", JWTKEY_INVALID, "bad sid", "sid missing");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"\",\"exp\":1795687500}", JWTKEY_INVALID, "bad sid", "sid empty");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":7,\"exp\":1795687500}", JWTKEY_INVALID, "bad sid", "sid a number");
	check_forged(ks, HDR, "{\"iss\":\"parley\",\"aud\":\"parley-relay\",\"sub\":\"42\","
	    "\"sid\":\"s1\",\"name\":7,\"exp\":1795687500}", JWTKEY_INVALID, "bad name",
	    "name a number");
	{
		char pl[800], longname[300];
		memset(longname, 'n', 256);
		longname[256] = '\0';
		snprintf(pl, sizeof(pl), "{\"iss\":\"parley\",\"aud\":\"parley-relay\","
		    "\"sub\":\"42\",\"sid\":\"s1\",\"name\":\"%s\",\"exp\":1795687500}", longname);
		check_forged(ks, HDR, pl, JWTKEY_INVALID, "bad name", "name of 256 bytes");
		longname[255] = '\0';
		snprintf(pl, sizeof(pl), "{\"iss\":\"parley\",\"aud\":\"parley-relay\","
		    "\"sub\":\"42\",\"sid\":\"s1\",\"name\":\"%s\",\"exp\":1795687500}", longname);
		check_forged(ks, HDR, pl, JWTKEY_OK, NULL, "name of 255 bytes");
		memset(longname, 's', 128);
		longname[128] = '\0';
		snprintf(pl, sizeof(pl), "{\"iss\":\"parley\",\"aud\":\"parley-relay\","
		    "\"sub\":\"42\",\"sid\":\"%s\",\"exp\":1795687500}", longname);
		check_forged(ks, HDR, pl, JWTKEY_INVALID, "bad sid", "sid of 128 bytes");
	}
	check_forged(ks, HDR, CLAIMS(",\"x\":\"\xc3\x28\""), JWTKEY_INVALID,
	    "invalid UTF-8", "invalid UTF-8 in the claims");
	check_forged(ks, HDR, CLAIMS(" x"), JWTKEY_INVALID, NULL, "junk after the claims");
	check_forged(ks, HDR, "[1]", JWTKEY_INVALID, NULL, "claims not an object");

	/* Deep nesting. */
	memset(deep, 0, sizeof(deep));
	strcpy(deep, "{\"iss\":\"parley\",\"x\":");
	for (i = 0; i < 40; i++)
		strcat(deep, "[");
	for (i = 0; i < 40; i++)
		strcat(deep, "]");
	strcat(deep, "}");
	check_forged(ks, HDR, deep, JWTKEY_INVALID, "too deep", "deeply nested claims");
	check_forged(ks, "{\"alg\":\"HS256\",\"x\":[[[[[[[[[[]]]]]]]]]]}", CLAIMS(""),
	    JWTKEY_INVALID, "too deep", "deeply nested header");

	/* Size. */
	memset(big, 'p', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[5800] = '\0';
	snprintf(seg, sizeof(seg), CLAIMS(",\"pad\":\"%s\""), big);
	tok = forge_hs(HDR, seg);
	ok(strlen(tok) <= JWTKEY_MAX_TOKEN, "(padded token of %zu bytes)", strlen(tok));
	check(ks, tok, JWTKEY_OK, NULL, "a token just under 8 KiB verifies");
	free(tok);
	big[5800] = 'p';
	big[6400] = '\0';
	snprintf(seg, sizeof(seg), CLAIMS(",\"pad\":\"%s\""), big);
	tok = forge_hs(HDR, seg);
	ok(strlen(tok) > JWTKEY_MAX_TOKEN, "(padded token of %zu bytes)", strlen(tok));
	check(ks, tok, JWTKEY_INVALID, "token too large", "a token over 8 KiB is refused");
	free(tok);

	/* Shape and encoding. */
	tok = forge_hs(HDR, CLAIMS(""));
	t2 = strdup(tok);
	*strrchr(t2, '.') = '\0';
	check(ks, t2, JWTKEY_INVALID, "malformed token", "2 segments");
	free(t2);
	t2 = malloc(strlen(tok) + 10);
	sprintf(t2, "%s.AAAA", tok);
	check(ks, t2, JWTKEY_INVALID, "malformed token", "4 segments");
	sprintf(t2, "%s=", tok);
	check(ks, t2, JWTKEY_INVALID, NULL, "padding on the signature");
	free(t2);
	t2 = with_segment(tok, 0, "eyJhbGciOiJIUzI1NiJ9=");
	check(ks, t2, JWTKEY_INVALID, "malformed token", "padding on the header");
	free(t2);
	t2 = with_segment(tok, 0, "eyJhbGciOiJIUzI1NiJ+");
	check(ks, t2, JWTKEY_INVALID, "malformed token", "'+' in the header");
	free(t2);
	t2 = with_segment(tok, 1, "");
	check(ks, t2, JWTKEY_INVALID, "malformed token", "empty payload segment");
	free(t2);
	check(ks, "", JWTKEY_INVALID, NULL, "empty token");
	check(ks, NULL, JWTKEY_INVALID, NULL, "NULL token");
	check(ks, "..", JWTKEY_INVALID, NULL, "only dots");

	/* Tampering. */
	b64(CLAIMS(",\"admin\":true"), strlen(CLAIMS(",\"admin\":true")), seg, sizeof(seg));
	t2 = with_segment(tok, 1, seg);
	check(ks, t2, JWTKEY_INVALID, "bad signature", "tampered payload");
	free(t2);
	t2 = strdup(tok);
	{
		char *s = strrchr(t2, '.') + 1;
		s[0] = s[0] == 'A' ? 'B' : 'A';
	}
	check(ks, t2, JWTKEY_INVALID, "bad signature", "tampered signature");
	free(t2);
	t2 = strdup(tok);
	t2[strlen(t2) - 5] ^= 1;	/* a change in the last bytes */
	check(ks, t2, JWTKEY_INVALID, NULL, "tampered signature tail");
	free(t2);
	free(tok);

	/* Alg confusion: an RS256 key set and HS256 signed with its public key. */
	jwtkey_free(ks);
	ks = load("RS256", "rsa.pub", 0, err, sizeof(err));
	if (!ok(ks != NULL, "load RS256 public key")) {
		diag("%s", err);
		return;
	}
	pem = read_text("rsa.pub");
	tok = forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", CLAIMS(""), EVP_sha256(), pem);
	check(ks, tok, JWTKEY_INVALID, "alg mismatch",
	    "alg confusion: HS256 signed with the RSA public key");
	free(tok);
	tok = forge("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", CLAIMS(""), EVP_sha256(), pem);
	check(ks, tok, JWTKEY_INVALID, NULL,
	    "RS256 header with an HMAC made from the public key");
	free(tok);
	jwtkey_free(ks);
}

/* Verify an RS256/ES256 token's signature with OpenSSL alone. */
static int
openssl_verifies(const char *tok, EVP_PKEY *pub, int ec)
{
	unsigned char	 sig[600], der[200], *p;
	const char	*dot = strrchr(tok, '.');
	EVP_MD_CTX	*md = EVP_MD_CTX_new();
	ECDSA_SIG	*es;
	BIGNUM		*r, *s;
	int		 n, ok_ = 0, dlen;

	n = util_b64url_decode(dot + 1, strlen(dot + 1), sig, sizeof(sig));
	if (n < 0)
		goto out;
	if (ec) {
		if (n != 64)
			goto out;	/* JWS ES256: raw R||S, 64 bytes */
		es = ECDSA_SIG_new();
		r = BN_bin2bn(sig, 32, NULL);
		s = BN_bin2bn(sig + 32, 32, NULL);
		ECDSA_SIG_set0(es, r, s);
		p = der;
		dlen = i2d_ECDSA_SIG(es, &p);
		ECDSA_SIG_free(es);
		memcpy(sig, der, (size_t)dlen);
		n = dlen;
	}
	ok_ = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1 &&
	    EVP_DigestVerify(md, sig, (size_t)n, (const unsigned char *)tok,
	    (size_t)(dot - tok)) == 1;
out:
	EVP_MD_CTX_free(md);
	return ok_;
}

static json_t *
decode_segment(const char *tok, int seg)
{
	unsigned char	buf[4096];
	const char	*p = tok, *dot;
	int		n;

	while (seg-- > 0)
		p = strchr(p, '.') + 1;
	dot = strchr(p, '.');
	n = util_b64url_decode(p, dot ? (size_t)(dot - p) : strlen(p), buf, sizeof(buf));
	return n < 0 ? NULL : json_loadb((char *)buf, (size_t)n, 0, NULL);
}

static void
round_trip(const char *alg, const char *signfile, const char *verifyfile, EVP_PKEY *pub)
{
	struct jwtkeyset	*signer, *verifier;
	struct jwtkey_claims	 cl;
	const char		*why = NULL;
	char			 err[512], name[100];
	char			*tok;
	int64_t			 exp = 0;
	json_t			*h, *c;

	signer = load(alg, signfile, 1, err, sizeof(err));
	verifier = load(alg, verifyfile, 0, err, sizeof(err));
	snprintf(name, sizeof(name), "%s: load signing and verifying keys", alg);
	if (!ok(signer && verifier, "%s", name)) {
		diag("%s", err);
		goto out;
	}
	tok = jwtkey_mint(signer, &params, 42, "Ann \xc3\xa9", "sess-1", NOW, &exp,
	    err, sizeof(err));
	snprintf(name, sizeof(name), "%s: mint", alg);
	if (!ok(tok != NULL, "%s", name)) {
		diag("%s", err);
		goto out;
	}
	is_int(exp, NOW + 300, "exp = now + ttl");
	ok(jwtkey_verify(verifier, &params, tok, NOW + 10, &cl, &why) == JWTKEY_OK,
	    "%s: verify the minted token (%s)", alg, why);
	ok(cl.sub == 42 && strcmp(cl.name, "Ann \xc3\xa9") == 0 &&
	    strcmp(cl.sid, "sess-1") == 0 && cl.iat == NOW && cl.nbf == NOW &&
	    cl.exp == NOW + 300 && strlen(cl.jti) == 22, "%s: claims read back", alg);
	is_str(jwtkey_kid(signer), jwtkey_kid(verifier),
	    "signer and verifier derive the same kid");

	h = decode_segment(tok, 0);
	c = decode_segment(tok, 1);
	ok(h && strcmp(json_string_value(json_object_get(h, "alg")), alg) == 0 &&
	    strcmp(json_string_value(json_object_get(h, "typ")), "JWT") == 0 &&
	    strcmp(json_string_value(json_object_get(h, "kid")), jwtkey_kid(signer)) == 0,
	    "%s: header has alg, typ JWT, kid", alg);
	ok(c && strcmp(json_string_value(json_object_get(c, "sub")), "42") == 0 &&
	    strcmp(json_string_value(json_object_get(c, "iss")), "parley") == 0 &&
	    strcmp(json_string_value(json_object_get(c, "aud")), "parley-relay") == 0 &&
	    json_is_integer(json_object_get(c, "exp")),
	    "%s: sub is a decimal string, iss/aud set, exp an integer", alg);
	json_decref(h);
	json_decref(c);

	if (pub != NULL)
		ok(openssl_verifies(tok, pub, alg[0] == 'E'),
		    "%s: OpenSSL alone verifies the signature (JWS format)", alg);

	ok(jwtkey_verify(verifier, &params, tok, NOW + 305, &cl, &why) == JWTKEY_EXPIRED &&
	    strcmp(why, "token expired") == 0, "%s: expired after ttl + leeway", alg);
	{
		struct jwtkey_params other = params;
		other.audience = "someone-else";
		ok(jwtkey_verify(verifier, &other, tok, NOW, &cl, &why) == JWTKEY_INVALID,
		    "%s: refused for another audience", alg);
	}
	free(tok);
out:
	jwtkey_free(signer);
	jwtkey_free(verifier);
}

static void
test_round_trips(void)
{
	round_trip("HS256", "hs.key", "hs.key", NULL);
	round_trip("RS256", "rsa.pem", "rsa.pub", rsa_key);
	round_trip("ES256", "ec.pem", "ec.pub", ec_key);
	round_trip("RS256", "rsa.pem", "rsa.pem", rsa_key);	/* private verifies too */
	round_trip("ES256", "ec.pem", "ec.pem", ec_key);
}

static void
test_rotation(void)
{
	struct jwtkeyset	*old, *both, *new_only;
	struct jwtkey_claims	 cl;
	const char		*why;
	char			 err[512], *tok;

	old = load("HS256", "hs-old.key", 1, err, sizeof(err));
	both = load("HS256", "hs.key,hs-old.key", 0, err, sizeof(err));
	new_only = load("HS256", "hs.key", 0, err, sizeof(err));
	if (!ok(old && both && new_only, "load old, new+old, new"))
		goto out;
	tok = jwtkey_mint(old, &params, 7, NULL, "s", NOW, NULL, err, sizeof(err));
	ok(jwtkey_verify(both, &params, tok, NOW, &cl, &why) == JWTKEY_OK && cl.sub == 7,
	    "rotation: a token from the old key verifies with 'new,old'");
	ok(jwtkey_verify(new_only, &params, tok, NOW, &cl, &why) == JWTKEY_INVALID,
	    "rotation: and not with the new key alone (%s)", why);
	free(tok);
	tok = forge("{\"alg\":\"HS256\"}", CLAIMS(""), EVP_sha256(), hs_old);
	ok(jwtkey_verify(both, &params, tok, NOW, &cl, &why) == JWTKEY_OK,
	    "rotation: without kid every key is tried");
	free(tok);
	is_str(jwtkey_kid(both), jwtkey_kid(new_only), "the first key signs");
	jwtkey_free(old);
	jwtkey_free(both);
	old = load("RS256", "rsa-old.pem", 1, err, sizeof(err));
	both = load("RS256", "rsa.pub,rsa-old.pub", 0, err, sizeof(err));
	tok = old ? jwtkey_mint(old, &params, 7, NULL, "s", NOW, NULL, err, sizeof(err)) : NULL;
	ok(tok && both && jwtkey_verify(both, &params, tok, NOW, &cl, &why) == JWTKEY_OK,
	    "rotation: RS256 old key verifies with 'new,old' public keys");
	free(tok);
out:
	jwtkey_free(old);
	jwtkey_free(both);
	jwtkey_free(new_only);
}

static void
refused(const char *alg, const char *files, int want_private, const char *needle,
    const char *name)
{
	struct jwtkeyset	*ks;
	char			 err[512] = "";

	ks = load(alg, files, want_private, err, sizeof(err));
	if (!ok(ks == NULL && strstr(err, needle) != NULL && strchr(err, '\n') == NULL,
	    "%s", name))
		diag("  err: %s", err);
	jwtkey_free(ks);
}

static void
test_key_files(void)
{
	struct jwtkeyset	*ks;
	char			 err[512], many[400], *tok;
	unsigned char		 h[32];
	char			 kid[64], buf[128];
	int			 i;

	refused("HS256", "hs31.key", 1, "at least 32", "HMAC secret of 31 bytes refused");
	ks = load("HS256", "hs32.key", 1, err, sizeof(err));
	ok(ks != NULL, "HMAC secret of exactly 32 bytes (+ newline, mode 0640) accepted");
	jwtkey_free(ks);
	refused("HS256", "hs644.key", 1, "accessible by other users",
	    "key file mode 0644 refused");
	refused("HS256", "hs604.key", 1, "accessible by other users",
	    "key file mode 0604 refused");
	refused("ES256", "ec644.pem", 1, "accessible by other users",
	    "PEM key file mode 0644 refused");
	refused("HS256", "missing.key", 1, "missing.key", "missing file refused, named");
	refused("RS256", "rsa.pub", 1, "public key", "public key refused for minting");
	refused("ES256", "ec.pub", 1, "public key", "EC public key refused for minting");
	refused("RS256", "rsa1024.pem", 1, "2048", "RSA 1024 refused");
	refused("RS256", "ec.pem", 1, "RSA", "EC key refused for RS256");
	refused("ES256", "rsa.pem", 1, "P-256", "RSA key refused for ES256");
	refused("ES256", "ec384.pem", 1, "P-256", "P-384 key refused for ES256");
	refused("RS256", "junk.pem", 1, "no PEM key", "garbage PEM refused");
	refused("hs256", "hs.key", 1, "unsupported", "alg name 'hs256' refused");
	refused("none", "hs.key", 1, "unsupported", "alg 'none' refused");
	refused("HS256", "hs.key,hs.key", 1, "same kid", "the same key twice refused");
	many[0] = '\0';
	for (i = 0; i < JWTKEY_MAX_KEYS + 1; i++)
		strcat(many, i ? ",hs32.key" : "hs32.key");
	refused("HS256", many, 0, "more than", "more than 8 key files refused");

	/* A public-key-only set cannot mint. */
	ks = load("RS256", "rsa.pub", 0, err, sizeof(err));
	tok = ks ? jwtkey_mint(ks, &params, 1, "x", "s", NOW, NULL, err, sizeof(err)) : NULL;
	ok(ks && tok == NULL, "minting with a public key fails: %s", err);
	free(tok);
	jwtkey_free(ks);

	/* HMAC kid: base64url(SHA-256("parley-kid:" || secret))[first 12 bytes]. */
	snprintf(buf, sizeof(buf), "parley-kid:%s", hs_secret);
	util_sha256(buf, strlen(buf), h);
	util_b64url_encode(h, 12, kid, sizeof(kid));
	ks = load("HS256", "hs.key", 1, err, sizeof(err));
	is_str(ks ? jwtkey_kid(ks) : NULL, kid, "HMAC kid derived from the secret");
	ok(ks && jwtkey_jwks(ks) == NULL, "no JWKS for HMAC keys");
	jwtkey_free(ks);

	/* A configured kid replaces the derived one. */
	snprintf(buf, sizeof(buf), "%s", path("hs.key"));
	ks = jwtkey_load("HS256", buf, "2026-11", 1, err, sizeof(err));
	is_str(ks ? jwtkey_kid(ks) : NULL, "2026-11", "configured kid used");
	jwtkey_free(ks);
	ks = jwtkey_load("HS256", buf, "bad kid\"", 1, err, sizeof(err));
	ok(ks == NULL, "a kid with quotes or spaces refused");
	jwtkey_free(ks);
}

/* RFC 7638 §3.1: the example RSA key's thumbprint. */
static void
test_rfc7638(void)
{
	static const char n64[] =
	    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
	    "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h"
	    "4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91C"
	    "bOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-"
	    "csFCur-kEgU8awapJzKnqDKgw";
	unsigned char		 nbin[300];
	int			 nlen;
	BIGNUM			*n, *e;
	OSSL_PARAM_BLD		*bld;
	OSSL_PARAM		*prm;
	EVP_PKEY_CTX		*ctx;
	EVP_PKEY		*pk = NULL;
	struct jwtkeyset	*ks;
	char			 err[512], *jwks;
	json_t			*j, *k;

	nlen = util_b64url_decode(n64, strlen(n64), nbin, sizeof(nbin));
	n = BN_bin2bn(nbin, nlen, NULL);
	e = BN_new();
	BN_set_word(e, 65537);
	bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
	prm = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY_fromdata_init(ctx);
	EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, prm);
	write_key("rfc7638.pub", pk, 0, 0600);
	ks = load("RS256", "rfc7638.pub", 0, err, sizeof(err));
	is_str(ks ? jwtkey_kid(ks) : err, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
	    "RSA kid is the RFC 7638 thumbprint (the RFC's example)");
	jwks = ks ? jwtkey_jwks(ks) : NULL;
	j = jwks ? json_loads(jwks, 0, NULL) : NULL;
	k = json_array_get(json_object_get(j, "keys"), 0);
	ok(k && strcmp(json_string_value(json_object_get(k, "n")), n64) == 0 &&
	    strcmp(json_string_value(json_object_get(k, "e")), "AQAB") == 0 &&
	    strcmp(json_string_value(json_object_get(k, "kty")), "RSA") == 0 &&
	    strcmp(json_string_value(json_object_get(k, "use")), "sig") == 0 &&
	    strcmp(json_string_value(json_object_get(k, "alg")), "RS256") == 0 &&
	    strcmp(json_string_value(json_object_get(k, "kid")),
	    "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs") == 0,
	    "RSA JWKS entry: kty, kid, use, alg, n, e");
	json_decref(j);
	free(jwks);
	jwtkey_free(ks);
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(prm);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
}

static void
test_ec_jwks(void)
{
	struct jwtkeyset	*ks;
	char			 err[512], *jwks, *canon, kid[64];
	unsigned char		 h[32];
	json_t			*j, *k, *t;
	size_t			 nk;

	ks = load("ES256", "ec.pub,rsa-old.pub", 0, err, sizeof(err));
	ok(ks == NULL, "an RSA key in an ES256 list is refused");
	ks = load("ES256", "ec.pub", 0, err, sizeof(err));
	jwks = ks ? jwtkey_jwks(ks) : NULL;
	j = jwks ? json_loads(jwks, JSON_REJECT_DUPLICATES, NULL) : NULL;
	nk = json_array_size(json_object_get(j, "keys"));
	k = json_array_get(json_object_get(j, "keys"), 0);
	ok(nk == 1 && k && strcmp(json_string_value(json_object_get(k, "kty")), "EC") == 0 &&
	    strcmp(json_string_value(json_object_get(k, "crv")), "P-256") == 0 &&
	    strlen(json_string_value(json_object_get(k, "x"))) == 43 &&
	    strlen(json_string_value(json_object_get(k, "y"))) == 43 &&
	    strcmp(json_string_value(json_object_get(k, "alg")), "ES256") == 0,
	    "EC JWKS entry: kty EC, crv P-256, 32-byte x and y, alg ES256");
	/* Recompute the thumbprint from the published members. */
	t = k ? json_pack("{s:O, s:O, s:O, s:O}", "crv", json_object_get(k, "crv"),
	    "kty", json_object_get(k, "kty"), "x", json_object_get(k, "x"),
	    "y", json_object_get(k, "y")) : NULL;
	canon = t ? json_dumps(t, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (canon) {
		util_sha256(canon, strlen(canon), h);
		util_b64url_encode(h, 32, kid, sizeof(kid));
	}
	ok(canon && strcmp(kid, jwtkey_kid(ks)) == 0 &&
	    strcmp(json_string_value(json_object_get(k, "kid")), kid) == 0,
	    "EC kid is the RFC 7638 thumbprint of the published JWK");
	free(canon);
	json_decref(t);
	json_decref(j);
	free(jwks);
	jwtkey_free(ks);

	ks = load("RS256", "rsa.pub,rsa-old.pub", 0, err, sizeof(err));
	jwks = ks ? jwtkey_jwks(ks) : NULL;
	j = jwks ? json_loads(jwks, 0, NULL) : NULL;
	is_int((int64_t)json_array_size(json_object_get(j, "keys")), 2,
	    "JWKS lists every key of the set");
	json_decref(j);
	free(jwks);
	jwtkey_free(ks);
}

/* A key set is shared by threads: mint and verify from four at once. */
struct thr {
	const struct jwtkeyset	*ks;
	const char		*tok;
	int			 bad;
};

static void *
thr_main(void *arg)
{
	struct thr		*t = arg;
	struct jwtkey_claims	 cl;
	const char		*why;
	char			 err[256], *tok;
	int			 i;

	for (i = 0; i < 100; i++) {
		if (jwtkey_verify(t->ks, &params, t->tok, NOW, &cl, &why) != JWTKEY_OK ||
		    cl.sub != 42)
			t->bad++;
		if (i % 4 == 0) {
			tok = jwtkey_mint(t->ks, &params, 9, "x", "s", NOW, NULL, err,
			    sizeof(err));
			if (tok == NULL || jwtkey_verify(t->ks, &params, tok, NOW, &cl,
			    &why) != JWTKEY_OK || cl.sub != 9)
				t->bad++;
			free(tok);
		}
	}
	return NULL;
}

static void
test_threads(const char *alg, const char *file)
{
	struct jwtkeyset	*ks;
	struct thr		 t[4];
	pthread_t		 th[4];
	char			 err[256], *tok;
	int			 i, bad = 0;

	ks = load(alg, file, 1, err, sizeof(err));
	tok = ks ? jwtkey_mint(ks, &params, 42, "Ann", "s1", NOW, NULL, err,
	    sizeof(err)) : NULL;
	if (!ok(tok != NULL, "%s: key set for the thread test", alg)) {
		jwtkey_free(ks);
		return;
	}
	for (i = 0; i < 4; i++) {
		t[i].ks = ks;
		t[i].tok = tok;
		t[i].bad = 0;
		pthread_create(&th[i], NULL, thr_main, &t[i]);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		bad += t[i].bad;
	}
	is_int(bad, 0, "four threads mint and verify with one shared key set");
	free(tok);
	jwtkey_free(ks);
}

int
main(void)
{
	char	cmd[300];

	if (mkdtemp(dir) == NULL)
		return 1;
	make_keys();
	test_hs_rejections();
	test_round_trips();
	test_rotation();
	test_key_files();
	test_rfc7638();
	test_ec_jwks();
	test_threads("HS256", "hs.key");
	test_threads("ES256", "ec.pem");
	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(ec_key);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	done_testing();
	return exit_status();
}
