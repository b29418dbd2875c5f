/*
 * token_keys.h: key files and configurations for the token service's unit
 * tests: an HMAC secret and an ES256 key in a private temporary directory,
 * and a conf snapshot built through the real option table.  Header only.
 */
#ifndef PARLEY_TOKEN_KEYS_H
#define PARLEY_TOKEN_KEYS_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "token.h"

static char	keys_dir[64];

/* Write n bytes to dir/name with mode; returns the path (static per name). */
static __attribute__((unused)) const char *
keys_write(const char *name, const void *data, size_t n, mode_t mode)
{
	static char	paths[8][128];
	static int	next;
	char		*p = paths[next++ % 8];
	int		 fd;

	snprintf(p, 128, "%s/%s", keys_dir, name);
	unlink(p);
	if ((fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 ||
	    write(fd, data, n) != (ssize_t)n) {
		perror(p);
		exit(1);
	}
	close(fd);
	chmod(p, mode);
	return p;
}

/* A fresh ES256 private key as PEM at dir/name. */
static __attribute__((unused)) const char *
keys_es256(const char *name)
{
	EVP_PKEY	*k = EVP_EC_gen("P-256");
	BIO		*b = BIO_new(BIO_s_mem());
	char		*data;
	long		 n;
	const char	*p;

	if (k == NULL || b == NULL ||
	    !PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)) {
		fprintf(stderr, "cannot make an EC key\n");
		exit(1);
	}
	n = BIO_get_mem_data(b, &data);
	p = keys_write(name, data, (size_t)n, 0600);
	BIO_free(b);
	EVP_PKEY_free(k);
	return p;
}

static __attribute__((unused)) void
keys_setup(void)
{
	static const char *const vars[] = {
		"PARLEY_CONFIG", "PARLEY_DB", "PARLEY_JWT_ALG",
		"PARLEY_JWT_KEY_FILE", "PARLEY_JWT_KID", "PARLEY_JWT_ISSUER",
		"PARLEY_JWT_AUDIENCE", "WS_TOKEN_TTL", "PARLEY_SESSION_TTL",
		"PARLEY_COOKIE_NAME", "PARLEY_COOKIE_SECURE",
		"PARLEY_ALLOWED_ORIGINS", "PARLEY_RELAY_URL", "PARLEY_LOG_LEVEL",
		"PARLEY_LISTEN", "PARLEY_THREADS", "PARLEY_SOCKET_MODE",
		"PARLEY_SOCKET_GROUP", "PARLEY_MAX_BODY", "PARLEY_SESSION_CACHE",
		"PARLEY_SESSION_CACHE_SIZE",
	};
	size_t	i;

	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	snprintf(keys_dir, sizeof(keys_dir), "/tmp/parley-token-t.XXXXXX");
	if (mkdtemp(keys_dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
}

static __attribute__((unused)) void
keys_teardown(void)
{
	char	cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", keys_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", keys_dir);
}

/*
 * Build a snapshot from the environment plus NULL-terminated "NAME=value"
 * settings (applied with setenv, removed afterwards).  NULL with err set
 * when refused.
 */
static __attribute__((unused)) struct conf *
keys_conf(char *err, size_t errlen, const char *const *settings)
{
	struct cfg_cli	 cli;
	struct cfg_opt	*opts;
	struct conf	*c = NULL;
	char		 name[64];
	size_t		 i;

	memset(&cli, 0, sizeof(cli));
	for (i = 0; settings[i] != NULL; i++) {
		const char *eq = strchr(settings[i], '=');

		snprintf(name, sizeof(name), "%.*s", (int)(eq - settings[i]),
		    settings[i]);
		setenv(name, eq + 1, 1);
	}
	if ((opts = conf_load_opts(&cli, err, errlen)) != NULL)
		c = conf_build(opts, err, errlen);
	for (i = 0; settings[i] != NULL; i++) {
		const char *eq = strchr(settings[i], '=');

		snprintf(name, sizeof(name), "%.*s", (int)(eq - settings[i]),
		    settings[i]);
		unsetenv(name);
	}
	return c;
}

#endif
