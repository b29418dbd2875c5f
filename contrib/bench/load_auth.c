/*
 * load_auth.c: parley-load's credentials.  Reads the benchmark's session list
 * (`user_id sid [name]`, rows the benchmark script created in SQL) and mints
 * one HS256 relay token per session with the project's key file, exactly as
 * common/jwtkey.c does (same claims, same derived kid); or reads pre-minted
 * tokens (`user_id sid token`).  Tokens are never printed.
 */
#include "config.h"

#include <sys/random.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "load.h"

#define LOAD_KEY_MAX	4096

/* Append s to a JSON string literal in out (ASCII control bytes escaped). */
static int
load_auth_jstr(char *out, size_t outlen, size_t *o, const char *s)
{
	static const char	hex[] = "0123456789abcdef";
	const unsigned char	*p;

	if (*o + 1 >= outlen)
		return -1;
	out[(*o)++] = '"';
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*o + 7 >= outlen)
			return -1;
		if (*p == '"' || *p == '\\') {
			out[(*o)++] = '\\';
			out[(*o)++] = (char)*p;
		} else if (*p < 0x20) {
			out[(*o)++] = '\\';
			out[(*o)++] = 'u';
			out[(*o)++] = '0';
			out[(*o)++] = '0';
			out[(*o)++] = hex[*p >> 4];
			out[(*o)++] = hex[*p & 15];
		} else {
			out[(*o)++] = (char)*p;
		}
	}
	out[(*o)++] = '"';
	out[*o] = '\0';
	return 0;
}

static int
load_auth_put(char *out, size_t outlen, size_t *o, const char *s)
{
	size_t	n = strlen(s);

	if (*o + n >= outlen)
		return -1;
	memcpy(out + *o, s, n + 1);
	*o += n;
	return 0;
}

/* One HS256 token for (uid, sid, name). */
static char *
load_auth_mint(const unsigned char *key, size_t keylen, const char *kid,
    int64_t uid, const char *sid, const char *name, int64_t now, int64_t ttl)
{
	char		 hdr[256], cl[1024], num[96], jti[32], *tok;
	unsigned char	 rnd[16], mac[EVP_MAX_MD_SIZE];
	unsigned int	 maclen = 0;
	size_t		 o = 0, hl, cll, toklen;
	int		 n;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return NULL;
	load_b64url(rnd, sizeof(rnd), jti, sizeof(jti));

	snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
	    kid);
	snprintf(num, sizeof(num), "%lld", (long long)uid);
	if (load_auth_put(cl, sizeof(cl), &o, "{\"iss\":\"parley\",\"aud\":"
	    "\"parley-relay\",\"sub\":") < 0 ||
	    load_auth_jstr(cl, sizeof(cl), &o, num) < 0 ||
	    load_auth_put(cl, sizeof(cl), &o, ",\"name\":") < 0 ||
	    load_auth_jstr(cl, sizeof(cl), &o, name) < 0 ||
	    load_auth_put(cl, sizeof(cl), &o, ",\"sid\":") < 0 ||
	    load_auth_jstr(cl, sizeof(cl), &o, sid) < 0)
		return NULL;
	snprintf(num, sizeof(num), ",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,"
	    "\"jti\":", (long long)now, (long long)now, (long long)(now + ttl));
	if (load_auth_put(cl, sizeof(cl), &o, num) < 0 ||
	    load_auth_jstr(cl, sizeof(cl), &o, jti) < 0 ||
	    load_auth_put(cl, sizeof(cl), &o, "}") < 0)
		return NULL;

	hl = strlen(hdr);
	cll = o;
	toklen = (hl + 2) / 3 * 4 + (cll + 2) / 3 * 4 + 64;
	if ((tok = malloc(toklen)) == NULL)
		return NULL;
	n = load_b64url((unsigned char *)hdr, hl, tok, toklen);
	o = (size_t)n;
	tok[o++] = '.';
	n = load_b64url((unsigned char *)cl, cll, tok + o, toklen - o);
	o += (size_t)n;
	if (HMAC(EVP_sha256(), key, (int)keylen, (unsigned char *)tok, o, mac,
	    &maclen) == NULL) {
		free(tok);
		return NULL;
	}
	tok[o++] = '.';
	load_b64url(mac, maclen, tok + o, toklen - o);
	return tok;
}

/* Read the secret; strip one trailing newline like common/jwtkey.c. */
static int
load_auth_key(const char *path, unsigned char *buf, size_t *len, char *kid,
    char *err, size_t errlen)
{
	static const char	 prefix[] = "parley-kid:";
	unsigned char		 h[SHA256_DIGEST_LENGTH];
	EVP_MD_CTX		*md;
	unsigned int		 hl = sizeof(h);
	FILE			*f;
	size_t			 n;

	if ((f = fopen(path, "rb")) == NULL) {
		snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
		return -1;
	}
	n = fread(buf, 1, LOAD_KEY_MAX, f);
	if (ferror(f) || !feof(f)) {
		fclose(f);
		snprintf(err, errlen, "key file %s: unreadable or larger than "
		    "%d bytes", path, LOAD_KEY_MAX);
		return -1;
	}
	fclose(f);
	if (n > 0 && buf[n - 1] == '\n') {
		n--;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
	}
	if (n < 32) {
		snprintf(err, errlen, "key file %s: HMAC secret of %zu bytes; "
		    "HS256 needs at least 32", path, n);
		return -1;
	}
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, prefix, sizeof(prefix) - 1) != 1 ||
	    EVP_DigestUpdate(md, buf, n) != 1 ||
	    EVP_DigestFinal_ex(md, h, &hl) != 1) {
		EVP_MD_CTX_free(md);
		snprintf(err, errlen, "key file %s: cannot hash", path);
		return -1;
	}
	EVP_MD_CTX_free(md);
	load_b64url(h, 12, kid, 32);
	*len = n;
	return 0;
}

/* Credentials; see load.h. */
struct load_cred *
load_auth_load(const char *credfile, const char *keyfile, int64_t ttl_s,
    size_t *np, char *err, size_t errlen)
{
	unsigned char		 key[LOAD_KEY_MAX];
	char			 kid[32], line[16384], name[256], *f[4], *save, *t;
	struct load_cred	*v = NULL, *nv;
	size_t			 n = 0, cap = 0, keylen = 0, lineno = 0;
	long long		 uid;
	int			 nf, ok = 0;
	FILE			*fp = NULL;
	char			*end;
	int64_t			 now = (int64_t)time(NULL);

	if (keyfile != NULL && load_auth_key(keyfile, key, &keylen, kid, err,
	    errlen) < 0)
		goto out;
	if ((fp = fopen(credfile, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", credfile, strerror(errno));
		goto out;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(fp)) {
			snprintf(err, errlen, "%s:%zu: line too long", credfile,
			    lineno);
			goto out;
		}
		nf = 0;
		for (t = strtok_r(line, " \t\r\n", &save); t != NULL && nf < 4;
		    t = strtok_r(NULL, " \t\r\n", &save))
			f[nf++] = t;
		if (nf == 0 || f[0][0] == '#')
			continue;
		errno = 0;
		uid = strtoll(f[0], &end, 10);
		if (nf < (keyfile != NULL ? 2 : 3) || nf > 3 || errno != 0 ||
		    *end != '\0' || uid <= 0 || strlen(f[1]) >= sizeof(v->sid)) {
			snprintf(err, errlen, "%s:%zu: expected '%s'", credfile,
			    lineno, keyfile != NULL ? "user_id sid [name]" :
			    "user_id sid token");
			goto out;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			v = nv;
		}
		v[n].uid = uid;
		strcpy(v[n].sid, f[1]);
		if (keyfile != NULL) {
			if (nf == 3)
				snprintf(name, sizeof(name), "%s", f[2]);
			else
				snprintf(name, sizeof(name), "load%lld", uid);
			v[n].token = load_auth_mint(key, keylen, kid, uid, f[1],
			    name, now, ttl_s);
		} else {
			v[n].token = strdup(f[2]);
		}
		if (v[n].token == NULL) {
			snprintf(err, errlen, "%s:%zu: cannot make the token",
			    credfile, lineno);
			goto out;
		}
		n++;
	}
	if (n == 0) {
		snprintf(err, errlen, "%s: no credentials", credfile);
		goto out;
	}
	ok = 1;
out:
	explicit_bzero(key, sizeof(key));
	explicit_bzero(line, sizeof(line));
	if (fp != NULL)
		fclose(fp);
	if (!ok) {
		load_auth_free(v, n);
		return NULL;
	}
	*np = n;
	return v;
}

/* Free credentials, wiping the tokens; see load.h. */
void
load_auth_free(struct load_cred *v, size_t n)
{
	size_t	i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++) {
		if (v[i].token != NULL) {
			explicit_bzero(v[i].token, strlen(v[i].token));
			free(v[i].token);
		}
	}
	free(v);
}
