/*
 * fuzz_cfg.c: libFuzzer target for the configuration file parser
 * (common/cfg.c) with parley-token's real option table, and for the
 * validation conf_build does on the values (token-fcgi/conf.c).
 *
 * The input is written to a memfd and loaded as the --config file; the key
 * file is forced by a flag to a test secret, so a fuzzed jwt_key_file can
 * not make the target read files of the machine.  A successful load must
 * survive a round trip: --print-config's output, loaded again, gives the
 * same values (cfg.c promises the two syntaxes agree).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "fuzz.h"
#include "log.h"
#include "token.h"

static int	 fuzz_cfg_fd = -1, fuzz_cfg_fd2 = -1;
static char	 fuzz_cfg_path[64], fuzz_cfg_path2[64];
static char	 fuzz_cfg_keydir[4096], fuzz_cfg_key[4200];

static void
fuzz_cfg_cleanup(void)
{
	unlink(fuzz_cfg_key);
	rmdir(fuzz_cfg_keydir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char	*tmp = getenv("TMPDIR");
	FILE		*fp;
	size_t		 i;

	(void)argc, (void)argv;
	log_init("fuzz_cfg", LOG_LEVEL_ERROR);
	/* Only the file and our flag may set anything. */
	for (i = 0; conf_opts[i].env != NULL; i++)
		unsetenv(conf_opts[i].env);
	unsetenv("PARLEY_CONFIG");

	if ((fuzz_cfg_fd = memfd_create("fuzz_cfg", MFD_CLOEXEC)) < 0 ||
	    (fuzz_cfg_fd2 = memfd_create("fuzz_cfg2", MFD_CLOEXEC)) < 0) {
		perror("fuzz: memfd_create");
		abort();
	}
	snprintf(fuzz_cfg_path, sizeof(fuzz_cfg_path), "/proc/self/fd/%d",
	    fuzz_cfg_fd);
	snprintf(fuzz_cfg_path2, sizeof(fuzz_cfg_path2), "/proc/self/fd/%d",
	    fuzz_cfg_fd2);

	snprintf(fuzz_cfg_keydir, sizeof(fuzz_cfg_keydir),
	    "%s/parley-fuzz-cfg.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(fuzz_cfg_keydir) == NULL) {
		perror("fuzz: mkdtemp");
		abort();
	}
	snprintf(fuzz_cfg_key, sizeof(fuzz_cfg_key), "%s/jwt.key",
	    fuzz_cfg_keydir);
	if ((fp = fopen(fuzz_cfg_key, "w")) == NULL ||
	    fchmod(fileno(fp), 0600) < 0 || fputs(FUZZ_HS_SECRET, fp) < 0 ||
	    fclose(fp) != 0) {
		perror("fuzz: key file");
		abort();
	}
	atexit(fuzz_cfg_cleanup);
	return 0;
}

/* Replace the content of a memfd. */
static void
fuzz_cfg_put(int fd, const void *data, size_t size)
{
	if (ftruncate(fd, 0) < 0 ||
	    (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size)) {
		perror("fuzz: memfd");
		abort();
	}
}

/* Load path into a fresh copy of the table; NULL when refused. */
static struct cfg_opt *
fuzz_cfg_load(const char *path, char *err, size_t errlen)
{
	struct cfg_cli	 cli;

	memset(&cli, 0, sizeof(cli));
	cli.config_file = path;
	cli.nflags = 1;
	cli.flag_env[0] = "PARLEY_JWT_KEY_FILE";
	cli.flag_val[0] = fuzz_cfg_key;
	return conf_load_opts(&cli, err, errlen);
}

/* --print-config, loaded again, must give the same values. */
static void
fuzz_cfg_roundtrip(const struct cfg_opt *opts)
{
	struct cfg_opt	*again;
	char		*text = NULL, err[512];
	size_t		 len = 0, i;
	FILE		*fp;

	if ((fp = open_memstream(&text, &len)) == NULL)
		abort();
	cfg_print_config(fp, opts);
	fclose(fp);
	fuzz_cfg_put(fuzz_cfg_fd2, text, len);
	again = fuzz_cfg_load(fuzz_cfg_path2, err, sizeof(err));
	if (again == NULL)
		fprintf(stderr, "fuzz: reload failed: %s\n", err);
	FUZZ_CHECK(again != NULL);
	for (i = 0; opts[i].env != NULL; i++) {
		if (opts[i].type == CFG_SECRET)
			continue;	/* printed as "(set)" */
		FUZZ_CHECK((opts[i].value == NULL) == (again[i].value == NULL));
		if (opts[i].value == NULL)
			continue;
		FUZZ_CHECK(strcmp(opts[i].value, again[i].value) == 0);
		FUZZ_CHECK(opts[i].num == again[i].num);
	}
	cfg_free(again);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg_opt	*opts, *copy;
	struct conf	*c;
	char		 err[512];

	fuzz_cfg_put(fuzz_cfg_fd, data, size);
	err[0] = '\0';
	if ((opts = fuzz_cfg_load(fuzz_cfg_path, err, sizeof(err))) == NULL) {
		FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)));
		return 0;
	}
	fuzz_cfg_roundtrip(opts);

	/* The validation of parley-token's values, keys included. */
	if ((copy = cfg_dup(opts)) == NULL)
		abort();
	err[0] = '\0';
	c = conf_build(copy, err, sizeof(err));
	FUZZ_CHECK(c != NULL || err[0] != '\0');
	if (c != NULL) {
		FUZZ_CHECK(c->keys != NULL && c->cookie_name != NULL);
		FUZZ_CHECK(c->max_body >= 64 && c->threads >= 1);
		conf_release(c);
	}
	cfg_free(opts);
	return 0;
}
