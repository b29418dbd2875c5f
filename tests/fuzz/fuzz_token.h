/*
 * fuzz_token.h: a parley-token configuration and a database that is
 * always down, for the fuzz targets that run whole requests.
 *
 * The configuration goes through the real path (conf_opts, cfg_load,
 * conf_build) with flags only, the HS256 test secret as key.  The database
 * handle never connects (its back-off never ends), so every route answers
 * as it does when PostgreSQL is unreachable: the parsing in front of the
 * SQL runs in full, and nothing leaves the process.  Header only.
 */
#ifndef PARLEY_FUZZ_TOKEN_H
#define PARLEY_FUZZ_TOKEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "token.h"

/*
 * A snapshot with allowed_origins = origins (NULL: same host only) and
 * debug logging off.  Aborts when refused.
 */
static __attribute__((unused)) struct conf *
fuzz_token_conf(const char *origins)
{
	const char	*tmp = getenv("TMPDIR");
	char		 dir[4096], key[4200], err[256];
	struct cfg_cli	 cli;
	struct cfg_opt	*opts;
	struct conf	*c;
	FILE		*fp;
	size_t		 i;

	for (i = 0; conf_opts[i].env != NULL; i++)
		unsetenv(conf_opts[i].env);
	unsetenv("PARLEY_CONFIG");
	snprintf(dir, sizeof(dir), "%s/parley-fuzz-token.XXXXXX",
	    tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("fuzz: mkdtemp");
		abort();
	}
	snprintf(key, sizeof(key), "%s/jwt.key", dir);
	if ((fp = fopen(key, "w")) == NULL || fchmod(fileno(fp), 0600) < 0 ||
	    fputs(FUZZ_HS_SECRET, fp) < 0 || fclose(fp) != 0) {
		perror("fuzz: key file");
		abort();
	}
	memset(&cli, 0, sizeof(cli));
	cli.flag_env[cli.nflags] = "PARLEY_JWT_KEY_FILE";
	cli.flag_val[cli.nflags++] = key;
	cli.flag_env[cli.nflags] = "PARLEY_LOG_LEVEL";
	cli.flag_val[cli.nflags++] = "error";
	cli.flag_env[cli.nflags] = "PARLEY_MAX_BODY";
	cli.flag_val[cli.nflags++] = "4k";
	if (origins != NULL) {
		cli.flag_env[cli.nflags] = "PARLEY_ALLOWED_ORIGINS";
		cli.flag_val[cli.nflags++] = origins;
	}
	c = NULL;
	if ((opts = conf_load_opts(&cli, err, sizeof(err))) != NULL)
		c = conf_build(opts, err, sizeof(err));
	unlink(key);
	rmdir(dir);
	if (c == NULL) {
		fprintf(stderr, "fuzz: configuration refused: %s\n", err);
		abort();
	}
	return c;
}

/* A database handle that answers DB_UNAVAILABLE without connecting. */
static __attribute__((unused)) void
fuzz_token_db_down(struct db *db, const char *conninfo)
{
	if (db_init(db, conninfo, "parley-fuzz", store_stmts) < 0)
		abort();
	db->retry_at_ms = INT64_MAX;
}

/*
 * Was exactly one well-formed answer written?  "Status: NNN Reason\r\n",
 * headers, a blank line; the status one the service documents.
 */
static __attribute__((unused)) int
fuzz_token_answer_ok(const char *out, size_t len, int status)
{
	static const int	 known[] = { 200, 204, 400, 401, 403, 404, 405,
	    413, 429, 500, 503 };
	char			 want[16];
	size_t			 i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (known[i] == status)
			break;
	if (i == sizeof(known) / sizeof(known[0]))
		return 0;
	snprintf(want, sizeof(want), "Status: %d ", status);
	return len > strlen(want) && strncmp(out, want, strlen(want)) == 0 &&
	    strstr(out, "\r\n\r\n") != NULL &&
	    strstr(out + strlen(want), "Status: ") == NULL;
}

#endif
