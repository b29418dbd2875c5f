/*
 * jwtkey.c: loading JWT keys, minting relay tokens, verifying them.
 *
 * libjwt 1.10 signs and checks signatures, nothing more: it checks no claim,
 * matches "alg" case-insensitively and across the HS family, keeps the last
 * of duplicated members and accepts "none" with an empty key.  So
 * jwtkey_verify does everything else itself, in this order: size cap, three
 * base64url segments, header parsed strictly (duplicates and deep nesting
 * refused) with "alg" compared byte for byte, claims parsed the same way
 * with each JSON type checked, and only then the signature through
 * jwt_decode with a real key, whose reported alg must match once more.
 *
 * Keys are read from files that other users cannot access.  PEM keys are
 * parsed with OpenSSL (never prompting for a passphrase) and handed to libjwt
 * re-serialised: the private key as unencrypted PKCS#8 for signing and the
 * public key as SubjectPublicKeyInfo for verifying (libjwt only accepts a
 * public key there).  ES256 signatures from libjwt 1.10 are raw R||S
 * (64 bytes, RFC 7518 §3.4), which any JWS library accepts.
 *
 * HS256 tokens are minted without libjwt, because its way (a jansson object
 * per token, dumped, base64-encoded, then an HMAC that fetches SHA-256 from
 * the provider each time) was most of the token service's CPU per token:
 * the header segment is encoded once per key, the claims are written
 * straight into a buffer with JSON string escaping (the same bytes
 * jansson's compact, key-sorted dump gives), and the HMAC starts from a
 * context keyed once at load and duplicated per token.  The jti comes from
 * a per-thread buffer filled by getrandom(2) 512 bytes at a time (refilled
 * after fork), not a system call per token.  RS256 and ES256, whose cost is
 * the signature itself, still go through libjwt.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "jsonutil.h"
#include "jwtkey.h"
#include "util.h"

#define JWTKEY_MAX_FILE		65536	/* bytes read from a key file */
#define JWTKEY_HDR_DEPTH	2	/* header: an object, maybe one array */
#define JWTKEY_CLAIMS_DEPTH	4
#define JWTKEY_CLAIMS_BUF	2048	/* HS256 fast path; longer claims use libjwt */
#define JWTKEY_RNG_BUF		512	/* random bytes fetched per getrandom(2) */

struct jwtkey_ent {
	unsigned char	*sign;		/* HMAC secret or private PKCS#8 PEM */
	size_t		 signlen;	/* 0: cannot sign (public key) */
	unsigned char	*verify;	/* HMAC secret or public key PEM */
	size_t		 verifylen;
	json_t		*jwk;		/* public JWK (RSA/EC), or NULL */
	char		 kid[64];
	EVP_MAC_CTX	*mac;		/* HS256 signing key: HMAC keyed once */
	char		*hdr;		/* HS256 signing key: header segment */
	size_t		 hdrlen;
};

struct jwtkeyset {
	enum jwtkey_alg		 alg;
	const char		*algname;
	jwt_alg_t		 jalg;
	int			 nkeys;
	struct jwtkey_ent	 keys[JWTKEY_MAX_KEYS];
};

static void
jwtkey_wipe_free(void *p, size_t n)
{
	if (p == NULL)
		return;
	explicit_bzero(p, n);
	free(p);
}

/*
 * Read a whole key file, refusing anything but a regular file that no
 * "other" user may read or write.  Returns a malloc'd buffer (NUL added, not
 * counted in *len) or NULL with err set.
 */
static unsigned char *
jwtkey_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
	struct stat	 st;
	unsigned char	*buf = NULL;
	size_t		 got = 0;
	ssize_t		 r;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		util_errf(err, errlen, "key file %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		util_errf(err, errlen, "key file %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		util_errf(err, errlen, "key file %s is not a regular file", path);
		goto fail;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH | S_IXOTH)) {
		util_errf(err, errlen, "key file %s is accessible by other users "
		    "(mode %04o); chmod o-rwx it", path, (unsigned)st.st_mode & 07777);
		goto fail;
	}
	if (st.st_size > JWTKEY_MAX_FILE) {
		util_errf(err, errlen, "key file %s is larger than %d bytes",
		    path, JWTKEY_MAX_FILE);
		goto fail;
	}
	if ((buf = malloc(JWTKEY_MAX_FILE + 1)) == NULL) {
		util_errf(err, errlen, "out of memory");
		goto fail;
	}
	for (;;) {
		r = read(fd, buf + got, JWTKEY_MAX_FILE + 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			util_errf(err, errlen, "key file %s: %s", path,
			    strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		got += (size_t)r;
		if (got > JWTKEY_MAX_FILE) {
			util_errf(err, errlen, "key file %s is larger than %d "
			    "bytes", path, JWTKEY_MAX_FILE);
			goto fail;
		}
	}
	close(fd);
	buf[got] = '\0';
	*len = got;
	return buf;
fail:
	jwtkey_wipe_free(buf, JWTKEY_MAX_FILE + 1);
	close(fd);
	return NULL;
}

/* OpenSSL passphrase callback: never prompt, fail instead. */
static int
jwtkey_no_pass(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

/* base64url of a BIGNUM, left-padded with zeros to pad bytes (0: minimal). */
static char *
jwtkey_bn_b64(const BIGNUM *bn, int pad)
{
	unsigned char	 bin[1024];
	char		*out;
	int		 n;

	n = pad > 0 ? pad : BN_num_bytes(bn);
	if (n <= 0 || n > (int)sizeof(bin))
		return NULL;
	if (BN_bn2binpad(bn, bin, n) != n)
		return NULL;
	if ((out = malloc(util_b64url_len((size_t)n) + 1)) == NULL)
		return NULL;
	util_b64url_encode(bin, (size_t)n, out, util_b64url_len((size_t)n) + 1);
	return out;
}

/*
 * The public JWK members of an RSA or EC key (RFC 7518 §6), as a new json
 * object holding only the members RFC 7638 hashes.  NULL on failure.
 */
static json_t *
jwtkey_pub_jwk(EVP_PKEY *pkey, enum jwtkey_alg alg)
{
	BIGNUM	*a = NULL, *b = NULL;
	char	*sa = NULL, *sb = NULL;
	json_t	*jwk = NULL;

	if (alg == JWTKEY_RS256) {
		if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &a) ||
		    !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &b))
			goto out;
		if ((sa = jwtkey_bn_b64(a, 0)) == NULL ||
		    (sb = jwtkey_bn_b64(b, 0)) == NULL)
			goto out;
		/* Members in lexicographic order, as RFC 7638 §3.2 hashes them. */
		jwk = json_pack("{s:s, s:s, s:s}", "e", sb, "kty", "RSA", "n", sa);
	} else {
		if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &a) ||
		    !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &b))
			goto out;
		if ((sa = jwtkey_bn_b64(a, 32)) == NULL ||
		    (sb = jwtkey_bn_b64(b, 32)) == NULL)
			goto out;
		jwk = json_pack("{s:s, s:s, s:s, s:s}", "crv", "P-256", "kty",
		    "EC", "x", sa, "y", sb);
	}
out:
	BN_free(a);
	BN_free(b);
	free(sa);
	free(sb);
	return jwk;
}

/* RFC 7638 thumbprint of a JWK holding only the required members. */
static int
jwtkey_thumbprint(const json_t *jwk, char *kid, size_t kidlen)
{
	unsigned char	 h[UTIL_SHA256_LEN];
	char		*s;

	/* JSON_SORT_KEYS + JSON_COMPACT: the canonical form of §3.3. */
	if ((s = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		return -1;
	util_sha256(s, strlen(s), h);
	free(s);
	return util_b64url_encode(h, sizeof(h), kid, kidlen) < 0 ? -1 : 0;
}

/* The PEM text of a key written by f (PKCS#8 private or SPKI public). */
static unsigned char *
jwtkey_pem(EVP_PKEY *pkey, int private, size_t *len)
{
	BIO		*bio;
	char		*data;
	long		 n;
	unsigned char	*out = NULL;
	int		 ok;

	if ((bio = BIO_new(BIO_s_secmem())) == NULL)
		return NULL;
	if (private)
		ok = PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);
	else
		ok = PEM_write_bio_PUBKEY(bio, pkey);
	if (ok && (n = BIO_get_mem_data(bio, &data)) > 0 &&
	    (out = malloc((size_t)n + 1)) != NULL) {
		memcpy(out, data, (size_t)n);
		out[n] = '\0';
		*len = (size_t)n;
	}
	BIO_free(bio);
	return out;
}

static int
jwtkey_load_pem(struct jwtkeyset *ks, struct jwtkey_ent *k, const char *path,
    const unsigned char *buf, size_t len, int want_private, char *err,
    size_t errlen)
{
	EVP_PKEY	*pkey = NULL;
	BIO		*bio = NULL;
	char		 group[64];
	int		 private = 1, rc = -1;

	if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL)
		goto oom;
	pkey = PEM_read_bio_PrivateKey(bio, NULL, jwtkey_no_pass, NULL);
	if (pkey == NULL) {
		ERR_clear_error();	/* leave no stale error for later calls */
		BIO_free(bio);
		if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL)
			goto oom;
		pkey = PEM_read_bio_PUBKEY(bio, NULL, jwtkey_no_pass, NULL);
		private = 0;
	}
	if (pkey == NULL) {
		ERR_clear_error();
		util_errf(err, errlen, "key file %s holds no PEM key OpenSSL can "
		    "read (encrypted keys are not supported)", path);
		goto out;
	}
	if (ks->alg == JWTKEY_RS256) {
		if (!EVP_PKEY_is_a(pkey, "RSA")) {
			util_errf(err, errlen, "key file %s: RS256 needs an RSA "
			    "key", path);
			goto out;
		}
		if (EVP_PKEY_get_bits(pkey) < 2048) {
			util_errf(err, errlen, "key file %s: RSA key of %d bits; "
			    "RS256 needs at least 2048", path,
			    EVP_PKEY_get_bits(pkey));
			goto out;
		}
	} else {
		if (!EVP_PKEY_is_a(pkey, "EC") ||
		    !EVP_PKEY_get_utf8_string_param(pkey,
		    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) ||
		    strcmp(group, "prime256v1") != 0) {
			util_errf(err, errlen, "key file %s: ES256 needs an EC "
			    "P-256 key", path);
			goto out;
		}
	}
	if (want_private && !private) {
		util_errf(err, errlen, "key file %s holds a public key; "
		    "signing needs the private key", path);
		goto out;
	}
	if (private && (k->sign = jwtkey_pem(pkey, 1, &k->signlen)) == NULL)
		goto oom;
	if ((k->verify = jwtkey_pem(pkey, 0, &k->verifylen)) == NULL)
		goto oom;
	if ((k->jwk = jwtkey_pub_jwk(pkey, ks->alg)) == NULL)
		goto oom;
	if (jwtkey_thumbprint(k->jwk, k->kid, sizeof(k->kid)) < 0)
		goto oom;
	rc = 0;
	goto out;
oom:
	util_errf(err, errlen, "key file %s: cannot process key", path);
out:
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	return rc;
}

static int
jwtkey_load_hmac(struct jwtkey_ent *k, const char *path, unsigned char *buf,
    size_t len, char *err, size_t errlen)
{
	static const char	 prefix[] = "parley-kid:";
	unsigned char		 h[UTIL_SHA256_LEN];
	EVP_MD_CTX		*md;
	unsigned int		 hl = sizeof(h);

	/* One trailing newline is what editors and `echo` add. */
	if (len > 0 && buf[len - 1] == '\n') {
		len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	if (len < 32) {
		util_errf(err, errlen, "key file %s: HMAC secret of %zu bytes; "
		    "HS256 needs at least 32", path, len);
		return -1;
	}
	if ((k->sign = malloc(len)) == NULL || (k->verify = malloc(len)) == NULL) {
		util_errf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(k->sign, buf, len);
	memcpy(k->verify, buf, len);
	k->signlen = k->verifylen = len;

	/* kid: base64url(SHA-256("parley-kid:" || secret)[0..12]). */
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, prefix, sizeof(prefix) - 1) != 1 ||
	    EVP_DigestUpdate(md, buf, len) != 1 ||
	    EVP_DigestFinal_ex(md, h, &hl) != 1) {
		EVP_MD_CTX_free(md);
		util_errf(err, errlen, "key file %s: cannot hash secret", path);
		return -1;
	}
	EVP_MD_CTX_free(md);
	util_b64url_encode(h, 12, k->kid, sizeof(k->kid));
	explicit_bzero(h, sizeof(h));
	return 0;
}

/* Is a kid printable ASCII of sane length? */
static int
jwtkey_kid_ok(const char *kid)
{
	size_t	i, n = strlen(kid);

	if (n == 0 || n >= sizeof(((struct jwtkey_ent *)0)->kid))
		return 0;
	for (i = 0; i < n; i++)
		if (kid[i] <= 0x20 || kid[i] >= 0x7f || kid[i] == '"' ||
		    kid[i] == '\\')
			return 0;
	return 1;
}

/*
 * What the HS256 fast path needs of the signing key: an HMAC-SHA256
 * context keyed with the secret (duplicated for each token) and the
 * base64url header segment, {"alg":"HS256","kid":"...","typ":"JWT"} with
 * its members sorted as libjwt writes them.  The kid needs no escaping
 * (jwtkey_kid_ok, or base64url when derived).
 */
static int
jwtkey_prepare_hs(struct jwtkey_ent *k)
{
	OSSL_PARAM	 params[2];
	EVP_MAC		*mac;
	char		 hdr[128];
	int		 n;

	if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		return -1;
	k->mac = EVP_MAC_CTX_new(mac);
	EVP_MAC_free(mac);	/* the context holds its own reference */
	if (k->mac == NULL)
		return -1;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(k->mac, k->sign, k->signlen, params) != 1)
		return -1;
	n = snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"kid\":\"%s\","
	    "\"typ\":\"JWT\"}", k->kid);
	if (n < 0 || (size_t)n >= sizeof(hdr))
		return -1;
	k->hdrlen = util_b64url_len((size_t)n);
	if ((k->hdr = malloc(k->hdrlen + 1)) == NULL ||
	    util_b64url_encode(hdr, (size_t)n, k->hdr, k->hdrlen + 1) < 0)
		return -1;
	return 0;
}

/* Load a key set; see jwtkey.h. */
struct jwtkeyset *
jwtkey_load(const char *alg, const char *files, const char *kid,
    int want_private, char *err, size_t errlen)
{
	struct jwtkeyset	*ks;
	unsigned char		*buf = NULL;
	char			*list = NULL, *path, *save = NULL, *p, *e;
	size_t			 len = 0;
	int			 i, j;

	if ((ks = calloc(1, sizeof(*ks))) == NULL) {
		util_errf(err, errlen, "out of memory");
		return NULL;
	}
	if (alg != NULL && strcmp(alg, "HS256") == 0) {
		ks->alg = JWTKEY_HS256;
		ks->jalg = JWT_ALG_HS256;
	} else if (alg != NULL && strcmp(alg, "RS256") == 0) {
		ks->alg = JWTKEY_RS256;
		ks->jalg = JWT_ALG_RS256;
	} else if (alg != NULL && strcmp(alg, "ES256") == 0) {
		ks->alg = JWTKEY_ES256;
		ks->jalg = JWT_ALG_ES256;
	} else {
		util_errf(err, errlen, "unsupported JWT algorithm '%.32s' "
		    "(HS256, RS256 or ES256)", alg ? alg : "");
		goto fail;
	}
	ks->algname = alg[0] == 'H' ? "HS256" : alg[0] == 'R' ? "RS256" : "ES256";
	if (kid != NULL && *kid != '\0' && !jwtkey_kid_ok(kid)) {
		util_errf(err, errlen, "invalid kid (1-63 printable characters)");
		goto fail;
	}
	if (files == NULL || (list = strdup(files)) == NULL) {
		util_errf(err, errlen, files ? "out of memory" : "no key file");
		goto fail;
	}
	for (path = strtok_r(list, ",", &save); path != NULL;
	    path = strtok_r(NULL, ",", &save)) {
		/* Trim blanks around each name in the list. */
		for (p = path; *p == ' ' || *p == '\t'; p++)
			;
		for (e = p + strlen(p); e > p && (e[-1] == ' ' || e[-1] == '\t');)
			*--e = '\0';
		if (*p == '\0')
			continue;
		if (ks->nkeys == JWTKEY_MAX_KEYS) {
			util_errf(err, errlen, "more than %d key files",
			    JWTKEY_MAX_KEYS);
			goto fail;
		}
		if ((buf = jwtkey_read_file(p, &len, err, errlen)) == NULL)
			goto fail;
		i = ks->nkeys++;
		if (ks->alg == JWTKEY_HS256) {
			if (jwtkey_load_hmac(&ks->keys[i], p, buf, len, err,
			    errlen) < 0)
				goto fail;
		} else if (jwtkey_load_pem(ks, &ks->keys[i], p, buf, len,
		    want_private && i == 0, err, errlen) < 0)
			goto fail;
		jwtkey_wipe_free(buf, JWTKEY_MAX_FILE + 1);
		buf = NULL;
	}
	if (ks->nkeys == 0) {
		util_errf(err, errlen, "no key file");
		goto fail;
	}
	if (kid != NULL && *kid != '\0')
		util_strlcpy(ks->keys[0].kid, kid, sizeof(ks->keys[0].kid));
	for (i = 0; i < ks->nkeys; i++)
		for (j = 0; j < i; j++)
			if (strcmp(ks->keys[i].kid, ks->keys[j].kid) == 0) {
				util_errf(err, errlen, "key files %d and %d have "
				    "the same kid '%s' (the same key twice?)",
				    j + 1, i + 1, ks->keys[i].kid);
				goto fail;
			}
	/* Only a signer needs the fast path; without it libjwt signs. */
	if (ks->alg == JWTKEY_HS256 && want_private &&
	    jwtkey_prepare_hs(&ks->keys[0]) < 0) {
		ERR_clear_error();
		EVP_MAC_CTX_free(ks->keys[0].mac);
		free(ks->keys[0].hdr);
		ks->keys[0].mac = NULL;
		ks->keys[0].hdr = NULL;
	}
	free(list);
	return ks;
fail:
	jwtkey_wipe_free(buf, JWTKEY_MAX_FILE + 1);
	free(list);
	jwtkey_free(ks);
	return NULL;
}

/* Release a key set, wiping secrets. */
void
jwtkey_free(struct jwtkeyset *ks)
{
	int	i;

	if (ks == NULL)
		return;
	for (i = 0; i < ks->nkeys; i++) {
		jwtkey_wipe_free(ks->keys[i].sign, ks->keys[i].signlen);
		jwtkey_wipe_free(ks->keys[i].verify, ks->keys[i].verifylen);
		json_decref(ks->keys[i].jwk);
		EVP_MAC_CTX_free(ks->keys[i].mac);	/* cleanses the key */
		free(ks->keys[i].hdr);
	}
	explicit_bzero(ks, sizeof(*ks));
	free(ks);
}

/* The set's algorithm. */
enum jwtkey_alg
jwtkey_alg(const struct jwtkeyset *ks)
{
	return ks->alg;
}

/* kid of the signing (first) key. */
const char *
jwtkey_kid(const struct jwtkeyset *ks)
{
	return ks->keys[0].kid;
}

/* ------------------------------------------------------------ minting */

/*
 * Random bytes for the jti, from a per-thread buffer filled by getrandom(2)
 * JWTKEY_RNG_BUF bytes at a time.  The buffer is allocated by the first mint
 * of a thread (a relay's many threads, which only verify, never pay for
 * one) and freed when the thread ends.  A child process must not hand out
 * what its parent buffered (the same jti twice): pthread_atfork bumps a
 * generation in the child, and a buffer filled under another generation is
 * refilled.
 */
struct jwtkey_rng {
	unsigned char	buf[JWTKEY_RNG_BUF];
	size_t		pos;
	unsigned	gen;
};

static atomic_uint	jwtkey_fork_gen;
static pthread_once_t	jwtkey_rng_once = PTHREAD_ONCE_INIT;
static pthread_key_t	jwtkey_rng_key;
static int		jwtkey_rng_keyed;

static void
jwtkey_rng_child(void)
{
	atomic_fetch_add(&jwtkey_fork_gen, 1);
}

static void
jwtkey_rng_free(void *p)
{
	explicit_bzero(p, sizeof(struct jwtkey_rng));
	free(p);
}

static void
jwtkey_rng_setup(void)
{
	jwtkey_rng_keyed = pthread_key_create(&jwtkey_rng_key,
	    jwtkey_rng_free) == 0;
	(void)pthread_atfork(NULL, NULL, jwtkey_rng_child);
}

/* n random bytes, each handed out once and wiped from the buffer.  0 or -1. */
static int
jwtkey_random(void *out, size_t n)
{
	struct jwtkey_rng	*r;
	unsigned		 g;

	(void)pthread_once(&jwtkey_rng_once, jwtkey_rng_setup);
	if (n > JWTKEY_RNG_BUF || !jwtkey_rng_keyed)
		return util_random(out, n);
	if ((r = pthread_getspecific(jwtkey_rng_key)) == NULL) {
		if ((r = malloc(sizeof(*r))) == NULL)
			return util_random(out, n);
		r->pos = sizeof(r->buf);
		r->gen = 0;
		if (pthread_setspecific(jwtkey_rng_key, r) != 0) {
			free(r);
			return util_random(out, n);
		}
	}
	g = atomic_load(&jwtkey_fork_gen);
	if (r->pos + n > sizeof(r->buf) || r->gen != g) {
		if (util_random(r->buf, sizeof(r->buf)) < 0)
			return -1;
		r->pos = 0;
		r->gen = g;
	}
	memcpy(out, r->buf + r->pos, n);
	explicit_bzero(r->buf + r->pos, n);
	r->pos += n;
	return 0;
}

/* A bounded output buffer for the claims; `over` once something did not fit. */
struct jwtkey_buf {
	char	*p;
	size_t	 len, cap;
	int	 over;
};

static void
jwtkey_put(struct jwtkey_buf *b, const char *s, size_t n)
{
	if (b->over || n > b->cap - b->len) {
		b->over = 1;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void
jwtkey_put_int(struct jwtkey_buf *b, int64_t v)
{
	char	num[24];
	int	n = snprintf(num, sizeof(num), "%lld", (long long)v);

	jwtkey_put(b, num, (size_t)n);
}

/*
 * A JSON string in double quotes, escaped as jansson dumps it: '"' and '\',
 * the short escapes for \b \f \n \r \t, \u00XX for other control
 * characters, everything else (valid UTF-8 included) as it is.
 */
static void
jwtkey_put_str(struct jwtkey_buf *b, const char *s)
{
	static const char	hex[] = "0123456789ABCDEF";
	const unsigned char	*p = (const unsigned char *)s, *run = p;
	char			 esc[6] = { '\\', 'u', '0', '0', 0, 0 };

	jwtkey_put(b, "\"", 1);
	for (; *p != '\0'; p++) {
		if (*p >= 0x20 && *p != '"' && *p != '\\')
			continue;
		jwtkey_put(b, (const char *)run, (size_t)(p - run));
		run = p + 1;
		switch (*p) {
		case '"':	jwtkey_put(b, "\\\"", 2); break;
		case '\\':	jwtkey_put(b, "\\\\", 2); break;
		case '\b':	jwtkey_put(b, "\\b", 2); break;
		case '\f':	jwtkey_put(b, "\\f", 2); break;
		case '\n':	jwtkey_put(b, "\\n", 2); break;
		case '\r':	jwtkey_put(b, "\\r", 2); break;
		case '\t':	jwtkey_put(b, "\\t", 2); break;
		default:
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 15];
			jwtkey_put(b, esc, 6);
			break;
		}
	}
	jwtkey_put(b, (const char *)run, (size_t)(p - run));
	jwtkey_put(b, "\"", 1);
}

/*
 * HS256 without libjwt: header.claims.signature into a new string.  The
 * claims are the members libjwt writes, in its (sorted) order.  Returns
 * the token, NULL with *fallback = 1 when the claims do not fit the
 * buffer (the caller uses libjwt), or NULL with err set.
 */
static char *
jwtkey_mint_hs(const struct jwtkey_ent *k, const struct jwtkey_params *pp,
    const char *subs, const char *name, const char *sid, const char *jti,
    int64_t now_s, int *fallback, char *err, size_t errlen)
{
	char			 claims[JWTKEY_CLAIMS_BUF];
	unsigned char		 sig[EVP_MAX_MD_SIZE];
	struct jwtkey_buf	 b = { claims, 0, sizeof(claims), 0 };
	EVP_MAC_CTX		*mac = NULL;
	char			*tok = NULL;
	size_t			 clen, total, siglen = 0, off;

	*fallback = 0;
	jwtkey_put(&b, "{\"aud\":", 7);
	jwtkey_put_str(&b, pp->audience);
	jwtkey_put(&b, ",\"exp\":", 7);
	jwtkey_put_int(&b, now_s + pp->ttl_s);
	jwtkey_put(&b, ",\"iat\":", 7);
	jwtkey_put_int(&b, now_s);
	jwtkey_put(&b, ",\"iss\":", 7);
	jwtkey_put_str(&b, pp->issuer);
	jwtkey_put(&b, ",\"jti\":", 7);
	jwtkey_put_str(&b, jti);
	if (name != NULL) {
		jwtkey_put(&b, ",\"name\":", 8);
		jwtkey_put_str(&b, name);
	}
	jwtkey_put(&b, ",\"nbf\":", 7);
	jwtkey_put_int(&b, now_s);
	jwtkey_put(&b, ",\"sid\":", 7);
	jwtkey_put_str(&b, sid);
	jwtkey_put(&b, ",\"sub\":", 7);
	jwtkey_put_str(&b, subs);
	jwtkey_put(&b, "}", 1);
	if (b.over) {
		*fallback = 1;
		return NULL;
	}

	clen = util_b64url_len(b.len);
	/* header . claims . signature(43) NUL */
	total = k->hdrlen + 1 + clen + 1 + util_b64url_len(32) + 1;
	if ((tok = malloc(total)) == NULL) {
		util_errf(err, errlen, "out of memory");
		return NULL;
	}
	memcpy(tok, k->hdr, k->hdrlen);
	off = k->hdrlen;
	tok[off++] = '.';
	util_b64url_encode(claims, b.len, tok + off, total - off);
	off += clen;
	if ((mac = EVP_MAC_CTX_dup(k->mac)) == NULL ||
	    EVP_MAC_update(mac, (const unsigned char *)tok, off) != 1 ||
	    EVP_MAC_final(mac, sig, &siglen, sizeof(sig)) != 1 || siglen != 32) {
		ERR_clear_error();
		util_errf(err, errlen, "cannot sign token");
		free(tok);
		tok = NULL;
		goto out;
	}
	tok[off++] = '.';
	util_b64url_encode(sig, siglen, tok + off, total - off);
out:
	EVP_MAC_CTX_free(mac);
	return tok;
}

/* Mint a token; see jwtkey.h. */
char *
jwtkey_mint(const struct jwtkeyset *ks, const struct jwtkey_params *pp,
    int64_t sub, const char *name, const char *sid, int64_t now_s,
    int64_t *exp, char *err, size_t errlen)
{
	const struct jwtkey_ent	*k = &ks->keys[0];
	unsigned char		 rnd[16];
	char			 jti[32], subs[24];
	jwt_t			*jwt = NULL;
	char			*tok = NULL, *out = NULL;
	int			 fallback = 1;

	if (k->signlen == 0) {
		util_errf(err, errlen, "no private key to sign with");
		return NULL;
	}
	if (sub <= 0 || sid == NULL || *sid == '\0' || strlen(sid) > 127 ||
	    (name != NULL && (strlen(name) > 255 ||
	    !util_utf8_valid(name, strlen(name)))) || pp->ttl_s <= 0) {
		util_errf(err, errlen, "invalid claims");
		return NULL;
	}
	if (jwtkey_random(rnd, sizeof(rnd)) < 0) {
		util_errf(err, errlen, "no randomness: %s", strerror(errno));
		return NULL;
	}
	util_b64url_encode(rnd, sizeof(rnd), jti, sizeof(jti));
	snprintf(subs, sizeof(subs), "%lld", (long long)sub);

	if (ks->alg == JWTKEY_HS256 && k->mac != NULL && k->hdr != NULL) {
		out = jwtkey_mint_hs(k, pp, subs, name, sid, jti, now_s,
		    &fallback, err, errlen);
		if (out == NULL && !fallback)
			return NULL;
		if (out != NULL)
			goto done;
	}

	if (jwt_new(&jwt) != 0 ||
	    jwt_set_alg(jwt, ks->jalg, k->sign, (int)k->signlen) != 0 ||
	    jwt_add_header(jwt, "typ", "JWT") != 0 ||
	    jwt_add_header(jwt, "kid", k->kid) != 0 ||
	    jwt_add_grant(jwt, "iss", pp->issuer) != 0 ||
	    jwt_add_grant(jwt, "aud", pp->audience) != 0 ||
	    jwt_add_grant(jwt, "sub", subs) != 0 ||
	    (name != NULL && jwt_add_grant(jwt, "name", name) != 0) ||
	    jwt_add_grant(jwt, "sid", sid) != 0 ||
	    jwt_add_grant_int(jwt, "iat", (long)now_s) != 0 ||
	    jwt_add_grant_int(jwt, "nbf", (long)now_s) != 0 ||
	    jwt_add_grant_int(jwt, "exp", (long)(now_s + pp->ttl_s)) != 0 ||
	    jwt_add_grant(jwt, "jti", jti) != 0) {
		util_errf(err, errlen, "cannot build token");
		goto out;
	}
	if ((tok = jwt_encode_str(jwt)) == NULL) {
		util_errf(err, errlen, "cannot sign token");
		goto out;
	}
	out = tok;
	tok = NULL;
done:
	if (exp != NULL)
		*exp = now_s + pp->ttl_s;
out:
	free(tok);
	jwt_free(jwt);	/* also frees libjwt's own copy of the key */
	return out;
}

/* Decode one base64url segment and parse it as a strict JSON object. */
static json_t *
jwtkey_segment(const char *s, size_t n, int depth, const char **reason)
{
	unsigned char	 buf[JWTKEY_MAX_TOKEN];
	int		 len;
	json_t		*j;

	if ((len = util_b64url_decode(s, n, buf, sizeof(buf))) < 0) {
		*reason = "malformed token";
		return NULL;
	}
	j = jsonutil_parse_object((const char *)buf, (size_t)len, depth, reason);
	return j;
}

/* "sub": a decimal string of an int64 > 0, no sign, no leading zero. */
static int
jwtkey_parse_sub(const char *s, int64_t *out)
{
	if (s == NULL || s[0] < '1' || s[0] > '9')
		return -1;
	if (util_parse_int64(s, out) < 0 || *out <= 0)
		return -1;
	return 0;
}

/* Optional integer claim: absent -> 0 (*present = 0); wrong type -> -1. */
static int
jwtkey_opt_int(const json_t *claims, const char *key, int64_t *out,
    int *present)
{
	*present = json_object_get(claims, key) != NULL;
	*out = 0;
	if (!*present)
		return 0;
	return jsonutil_get_int(claims, key, out);
}

static int
jwtkey_aud_ok(const json_t *claims, const char *want)
{
	const json_t	*aud = json_object_get(claims, "aud"), *v;
	size_t		 i;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	if (!json_is_array(aud))
		return 0;
	json_array_foreach(aud, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
			return 1;
	return 0;
}

/* Does libjwt accept the signature with this key (and report our alg)? */
static int
jwtkey_sig_ok(const struct jwtkeyset *ks, const struct jwtkey_ent *k,
    const char *token)
{
	jwt_t	*jwt = NULL;
	int	 ok;

	if (k->verify == NULL || k->verifylen == 0)
		return 0;	/* never decode without a key */
	ok = jwt_decode(&jwt, token, k->verify, (int)k->verifylen) == 0 &&
	    jwt != NULL && jwt_get_alg(jwt) == ks->jalg;
	jwt_free(jwt);
	return ok;
}

/* Verify a token; see jwtkey.h. */
enum jwtkey_result
jwtkey_verify(const struct jwtkeyset *ks, const struct jwtkey_params *pp,
    const char *token, int64_t now_s, struct jwtkey_claims *cl,
    const char **reason)
{
	const char		*d1, *d2, *s, *why = "invalid token";
	json_t			*hdr = NULL, *claims = NULL;
	const json_t		*v;
	const struct jwtkey_ent	*only = NULL;
	unsigned char		 sig[1024];
	int64_t			 iat, nbf, exp;
	int			 has_iat, has_nbf, has_exp, i, verified;
	size_t			 n;
	enum jwtkey_result	 rc = JWTKEY_INVALID;

	memset(cl, 0, sizeof(*cl));
	if (token == NULL || (n = strnlen(token, JWTKEY_MAX_TOKEN + 1)) == 0) {
		why = "missing token";
		goto out;
	}
	if (n > JWTKEY_MAX_TOKEN) {
		why = "token too large";
		goto out;
	}
	/* Exactly three non-empty segments (so no "alg":"none" with "" sig). */
	if ((d1 = strchr(token, '.')) == NULL ||
	    (d2 = strchr(d1 + 1, '.')) == NULL || strchr(d2 + 1, '.') != NULL ||
	    d1 == token || d2 == d1 + 1 || d2[1] == '\0') {
		why = "malformed token";
		goto out;
	}

	/* The header, pinned to the configured algorithm byte for byte. */
	if ((hdr = jwtkey_segment(token, (size_t)(d1 - token),
	    JWTKEY_HDR_DEPTH, &why)) == NULL)
		goto out;
	if ((s = jsonutil_get_str(hdr, "alg")) == NULL ||
	    strcmp(s, ks->algname) != 0) {
		why = "alg mismatch";
		goto out;
	}
	if ((v = json_object_get(hdr, "typ")) != NULL &&
	    (!json_is_string(v) || strcmp(json_string_value(v), "JWT") != 0)) {
		why = "bad typ";
		goto out;
	}
	if (json_object_get(hdr, "crit") != NULL) {
		why = "unsupported crit header";	/* RFC 7515 §4.1.11 */
		goto out;
	}
	if ((v = json_object_get(hdr, "kid")) != NULL) {
		if (!json_is_string(v)) {
			why = "bad kid";
			goto out;
		}
		for (i = 0; i < ks->nkeys; i++)
			if (strcmp(ks->keys[i].kid, json_string_value(v)) == 0)
				only = &ks->keys[i];
		if (only == NULL) {
			why = "unknown kid";
			goto out;
		}
	}

	/* The signature must be canonical base64url of the right length. */
	if ((i = util_b64url_decode(d2 + 1, n - (size_t)(d2 + 1 - token), sig,
	    sizeof(sig))) < 0 || (ks->alg == JWTKEY_HS256 && i != 32) ||
	    (ks->alg == JWTKEY_ES256 && i != 64) ||
	    (ks->alg == JWTKEY_RS256 && i < 256)) {
		why = "malformed signature";
		goto out;
	}

	/* The claims, each with its JSON type. */
	if ((claims = jwtkey_segment(d1 + 1, (size_t)(d2 - d1 - 1),
	    JWTKEY_CLAIMS_DEPTH, &why)) == NULL)
		goto out;
	if ((s = jsonutil_get_str(claims, "iss")) == NULL ||
	    strcmp(s, pp->issuer) != 0) {
		why = "bad issuer";
		goto out;
	}
	if (!jwtkey_aud_ok(claims, pp->audience)) {
		why = "bad audience";
		goto out;
	}
	if (jwtkey_parse_sub(jsonutil_get_str(claims, "sub"), &cl->sub) < 0) {
		why = "bad sub";
		goto out;
	}
	if ((v = json_object_get(claims, "name")) != NULL) {
		if (!json_is_string(v) || json_string_length(v) >= sizeof(cl->name)) {
			why = "bad name";
			goto out;
		}
		util_strlcpy(cl->name, json_string_value(v), sizeof(cl->name));
	}
	if ((s = jsonutil_get_str(claims, "sid")) == NULL || *s == '\0' ||
	    strlen(s) >= sizeof(cl->sid)) {
		why = "bad sid";
		goto out;
	}
	util_strlcpy(cl->sid, s, sizeof(cl->sid));
	if ((v = json_object_get(claims, "jti")) != NULL) {
		if (!json_is_string(v) || json_string_length(v) >= sizeof(cl->jti)) {
			why = "bad jti";
			goto out;
		}
		util_strlcpy(cl->jti, json_string_value(v), sizeof(cl->jti));
	}
	if (jwtkey_opt_int(claims, "iat", &iat, &has_iat) < 0 ||
	    jwtkey_opt_int(claims, "nbf", &nbf, &has_nbf) < 0 ||
	    jwtkey_opt_int(claims, "exp", &exp, &has_exp) < 0) {
		why = "bad time claim";
		goto out;
	}
	if (!has_exp) {
		why = "missing exp";
		goto out;
	}
	if (has_nbf && nbf > now_s + pp->leeway_s) {
		why = "token not yet valid";
		goto out;
	}
	if (has_iat && iat > now_s + pp->leeway_s) {
		why = "token issued in the future";
		goto out;
	}

	/* Now the signature, always with a real key. */
	verified = 0;
	for (i = 0; i < ks->nkeys && !verified; i++) {
		if (only != NULL && only != &ks->keys[i])
			continue;
		verified = jwtkey_sig_ok(ks, &ks->keys[i], token);
	}
	if (!verified) {
		why = "bad signature";
		goto out;
	}
	cl->iat = iat;
	cl->nbf = nbf;
	cl->exp = exp;
	if (exp <= INT64_MAX - pp->leeway_s && exp + pp->leeway_s <= now_s) {
		why = "token expired";
		rc = JWTKEY_EXPIRED;
		goto out;
	}
	why = "ok";
	rc = JWTKEY_OK;
out:
	json_decref(hdr);
	json_decref(claims);
	if (rc == JWTKEY_INVALID)
		memset(cl, 0, sizeof(*cl));
	if (reason != NULL)
		*reason = why;
	return rc;
}

/* JWK Set of the public keys, or NULL for HMAC; see jwtkey.h. */
char *
jwtkey_jwks(const struct jwtkeyset *ks)
{
	json_t	*set, *arr, *k;
	char	*out = NULL;
	int	 i;

	if (ks->alg == JWTKEY_HS256)
		return NULL;
	if ((set = json_object()) == NULL)
		return NULL;
	if ((arr = json_array()) == NULL || json_object_set_new(set, "keys", arr))
		goto out;
	for (i = 0; i < ks->nkeys; i++) {
		if ((k = json_deep_copy(ks->keys[i].jwk)) == NULL ||
		    json_object_set_new(k, "kid", json_string(ks->keys[i].kid)) ||
		    json_object_set_new(k, "use", json_string("sig")) ||
		    json_object_set_new(k, "alg", json_string(ks->algname)) ||
		    json_array_append_new(arr, k))
			goto out;
	}
	out = json_dumps(set, JSON_COMPACT);
out:
	json_decref(set);
	return out;
}
