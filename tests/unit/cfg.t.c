/*
 * cfg.t.c: unit tests of common/cfg.c: argument parsing, the precedence
 * flags > environment > file > defaults with sources recorded, typed values,
 * file syntax, error messages (secrets never echoed), a failed reload
 * keeping the old table, --help and --print-config.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "tap.h"

#define SECRET	"hunter2-very-secret"

static const struct cfg_opt proto[] = {
	{ "WS_HEARTBEAT_INTERVAL", "heartbeat-interval", CFG_DURATION, "30s", 1,
	  "ping interval", "DURATION", NULL, 0, 0 },
	{ "WS_CONNECTION_TIMEOUT", "connection-timeout", CFG_DURATION, "2m", 1,
	  "idle timeout", "DURATION", NULL, 0, 0 },
	{ "PARLEY_MAX_FRAME", "max-frame", CFG_SIZE, "64k", 1,
	  "largest frame", "SIZE", NULL, 0, 0 },
	{ "PARLEY_FLOOD_LIMIT", "flood-limit", CFG_INT, "50", 1,
	  "rate-limited commands before 4029", "N", NULL, 0, 0 },
	{ "PARLEY_COOKIE_SECURE", "cookie-secure", CFG_BOOL, "1", 0,
	  "Secure cookies", "BOOL", NULL, 0, 0 },
	{ "PARLEY_RELAY_URL", "relay-url", CFG_STRING, NULL, 1,
	  "URL returned with tokens", "URL", NULL, 0, 0 },
	{ "PARLEY_DB", "db", CFG_SECRET, NULL, 0,
	  "libpq conninfo", "CONNINFO", NULL, 0, 0 },
	{ "PARLEY_NO_FLAG", NULL, CFG_STRING, "x", 0,
	  "a row without a flag", NULL, NULL, 0, 0 },
	{ NULL, NULL, 0, NULL, 0, NULL, NULL, NULL, 0, 0 }
};

static char	tmpdir[] = "/tmp/parley-cfg-test-XXXXXX";

static void
clear_env(void)
{
	size_t	i;

	for (i = 0; proto[i].env != NULL; i++)
		unsetenv(proto[i].env);
	unsetenv("PARLEY_CONFIG");
}

static char *
write_file(const char *name, const char *text)
{
	static char	path[256];
	FILE		*fp;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	fputs(text, fp);
	fclose(fp);
	return path;
}

/* argv from a NULL-terminated list (argv[0] added). */
static int
args(struct cfg_opt *t, struct cfg_cli *cli, char *err, size_t errlen, ...)
{
	char	*argv[32];
	int	 argc = 0;
	va_list	 ap;

	argv[argc++] = (char *)"prog";
	va_start(ap, errlen);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	return cfg_parse_args(t, argc, argv, cli, err, errlen);
}

static const struct cfg_opt *
row(const struct cfg_opt *t, const char *env)
{
	return cfg_find(t, env);
}

static void
test_key(void)
{
	char	buf[64];

	is_str(cfg_key(&proto[0], buf, sizeof(buf)), "heartbeat_interval",
	    "file key drops WS_ and lower-cases");
	is_str(cfg_key(&proto[2], buf, sizeof(buf)), "max_frame",
	    "file key drops PARLEY_");
}

static void
test_precedence(void)
{
	struct cfg_opt	*t = cfg_dup(proto);
	struct cfg_cli	 cli;
	char		 err[512], *path;

	clear_env();
	path = write_file("prec.conf",
	    "# a comment\n"
	    "\n"
	    "heartbeat_interval = 1m\n"
	    "connection_timeout = 3m\n"
	    "max_frame = 128k\n"
	    "  flood_limit=7   # trailing comment\n");
	setenv("WS_HEARTBEAT_INTERVAL", "2m", 1);
	setenv("WS_CONNECTION_TIMEOUT", "4m", 1);
	setenv("PARLEY_COOKIE_SECURE", "", 1);	/* empty: not set */
	ok(args(t, &cli, err, sizeof(err), "--config", path,
	    "--heartbeat-interval", "5m", NULL) == 0, "parse args");
	if (!ok(cfg_load(t, &cli, err, sizeof(err)) == 0, "load"))
		diag("%s", err);

	is_int(cfg_num(t, "WS_HEARTBEAT_INTERVAL"), 300000, "flag beats env and file");
	is_int(row(t, "WS_HEARTBEAT_INTERVAL")->src, CFG_SRC_FLAG, "  source flag");
	is_int(cfg_num(t, "WS_CONNECTION_TIMEOUT"), 240000, "env beats file");
	is_int(row(t, "WS_CONNECTION_TIMEOUT")->src, CFG_SRC_ENV, "  source env");
	is_int(cfg_num(t, "PARLEY_MAX_FRAME"), 131072, "file beats default");
	is_int(row(t, "PARLEY_MAX_FRAME")->src, CFG_SRC_FILE, "  source file");
	is_int(cfg_num(t, "PARLEY_FLOOD_LIMIT"), 7, "file value before a comment");
	is_int(cfg_num(t, "PARLEY_COOKIE_SECURE"), 1, "default when nothing else");
	is_int(row(t, "PARLEY_COOKIE_SECURE")->src, CFG_SRC_DEFAULT,
	    "  source default (an empty env var counts as unset)");
	is_str(cfg_str(t, "PARLEY_RELAY_URL"), NULL, "no default: unset");
	is_int(row(t, "PARLEY_RELAY_URL")->src, CFG_SRC_UNSET, "  source unset");
	is_str(cfg_str(t, "WS_HEARTBEAT_INTERVAL"), "5m", "text value kept");

	/* The config file named by $PARLEY_CONFIG, and --flag=value. */
	setenv("PARLEY_CONFIG", path, 1);
	ok(args(t, &cli, err, sizeof(err), "--max-frame=1m", NULL) == 0,
	    "parse --flag=value");
	is_str(cli.config_file, path, "$PARLEY_CONFIG names the file");
	ok(cfg_load(t, &cli, err, sizeof(err)) == 0, "reload");
	is_int(cfg_num(t, "PARLEY_MAX_FRAME"), 1048576, "--flag=value applied");
	is_int(cfg_num(t, "WS_HEARTBEAT_INTERVAL"), 120000, "without the flag, env wins");
	unsetenv("WS_HEARTBEAT_INTERVAL");
	ok(cfg_load(t, &cli, err, sizeof(err)) == 0, "reload");
	is_int(cfg_num(t, "WS_HEARTBEAT_INTERVAL"), 60000, "without env, the file wins");
	is_int(row(t, "WS_HEARTBEAT_INTERVAL")->src, CFG_SRC_FILE, "  source file");
	clear_env();
	ok(args(t, &cli, err, sizeof(err), NULL) == 0 &&
	    cfg_load(t, &cli, err, sizeof(err)) == 0, "reload with nothing");
	is_int(cfg_num(t, "WS_HEARTBEAT_INTERVAL"), 30000, "without a file, the default");
	is_int(cfg_num(t, "PARLEY_MAX_FRAME"), 65536, "size default 64k");
	cfg_free(t);
}

static void
test_bad_reload(void)
{
	struct cfg_opt	*t = cfg_dup(proto);
	struct cfg_cli	 cli;
	char		 err[512], *path;

	clear_env();
	path = write_file("good.conf", "max_frame = 1m\nrelay_url = wss://x/ws\n");
	args(t, &cli, err, sizeof(err), "--config", path, "--flood-limit", "9", NULL);
	ok(cfg_load(t, &cli, err, sizeof(err)) == 0, "good load");

	write_file("good.conf", "max_frame = lots\n");
	ok(cfg_load(t, &cli, err, sizeof(err)) == -1, "bad reload fails");
	ok(strstr(err, "max_frame") != NULL && strstr(err, "'lots'") != NULL,
	    "error names the key and the value: %s", err);
	ok(strstr(err, "good.conf:1") != NULL, "error names file:line");
	is_int(cfg_num(t, "PARLEY_MAX_FRAME"), 1048576, "old value kept");
	is_str(cfg_str(t, "PARLEY_RELAY_URL"), "wss://x/ws", "old string kept");
	is_int(row(t, "PARLEY_RELAY_URL")->src, CFG_SRC_FILE, "old source kept");
	is_int(cfg_num(t, "PARLEY_FLOOD_LIMIT"), 9, "flag value kept");

	write_file("good.conf", "max_frame = 2m\n\nfoo = bar\n");
	ok(cfg_load(t, &cli, err, sizeof(err)) == -1, "unknown key fails");
	ok(strstr(err, "good.conf:3: unknown key 'foo'") != NULL,
	    "unknown key error has file:line: %s", err);
	is_int(cfg_num(t, "PARLEY_MAX_FRAME"), 1048576, "old value kept after unknown key");

	write_file("good.conf", "max_frame = 2m\nmax_frame = 3m\n");
	ok(cfg_load(t, &cli, err, sizeof(err)) == -1 && strstr(err, ":2: duplicate key"),
	    "duplicate key fails: %s", err);

	setenv("WS_HEARTBEAT_INTERVAL", "-5s", 1);
	write_file("good.conf", "\n");
	ok(cfg_load(t, &cli, err, sizeof(err)) == -1, "bad env value fails");
	ok(strstr(err, "heartbeat_interval") && strstr(err, "'-5s'") &&
	    strstr(err, "WS_HEARTBEAT_INTERVAL"), "error names key, value, env: %s", err);
	clear_env();

	args(t, &cli, err, sizeof(err), "--cookie-secure", "maybe", NULL);
	ok(cfg_load(t, &cli, err, sizeof(err)) == -1 &&
	    strstr(err, "cookie_secure: invalid boolean 'maybe'") &&
	    strstr(err, "--cookie-secure"), "bad flag value: %s", err);
	args(t, &cli, err, sizeof(err), "--flood-limit", "12x", NULL);
	ok(cfg_load(t, &cli, err, sizeof(err)) == -1 &&
	    strstr(err, "invalid integer '12x'"), "bad integer: %s", err);

	args(t, &cli, err, sizeof(err), "--config", "/nonexistent/parley.conf", NULL);
	ok(cfg_load(t, &cli, err, sizeof(err)) == -1 &&
	    strstr(err, "/nonexistent/parley.conf"), "missing file: %s", err);
	is_int(cfg_num(t, "PARLEY_MAX_FRAME"), 1048576, "still the old table");
	cfg_free(t);
}

static void
test_secrets(void)
{
	struct cfg_opt	*t = cfg_dup(proto);
	struct cfg_cli	 cli;
	char		 err[512], *path, *out = NULL;
	size_t		 outlen = 0;
	FILE		*fp;

	clear_env();
	path = write_file("s.conf", "db " SECRET "\n");
	args(t, &cli, err, sizeof(err), "--config", path, NULL);
	ok(cfg_load(t, &cli, err, sizeof(err)) == -1 && strstr(err, SECRET) == NULL,
	    "a malformed line does not echo its text: %s", err);
	path = write_file("s.conf", "db = \"" SECRET "\n");
	ok(cfg_load(t, &cli, err, sizeof(err)) == -1 && strstr(err, SECRET) == NULL,
	    "bad quoting does not echo the value: %s", err);
	path = write_file("s.conf", SECRET " = 1\n");
	ok(cfg_load(t, &cli, err, sizeof(err)) == -1, "unknown key fails");

	path = write_file("s.conf", "db = \"host=x password=" SECRET " # x\"\n");
	ok(cfg_load(t, &cli, err, sizeof(err)) == 0, "quoted value with ' #'");
	is_str(cfg_str(t, "PARLEY_DB"), "host=x password=" SECRET " # x",
	    "quoted value kept whole");
	fp = open_memstream(&out, &outlen);
	cfg_print_config(fp, t);
	fclose(fp);
	ok(strstr(out, SECRET) == NULL, "--print-config never shows a secret");
	ok(strstr(out, "db = (set)  # file\n") != NULL, "secret shown as (set)");
	free(out);
	cfg_free(t);
}

static void
test_print_roundtrip(void)
{
	struct cfg_opt	*t = cfg_dup(proto), *u = cfg_dup(proto);
	struct cfg_cli	 cli;
	char		 err[512], *out = NULL;
	size_t		 outlen = 0, i;
	FILE		*fp;
	int		 same = 1;

	clear_env();
	setenv("PARLEY_RELAY_URL", "ws://h/ws #frag", 1);
	args(t, &cli, err, sizeof(err), "--flood-limit", "5", NULL);
	ok(cfg_load(t, &cli, err, sizeof(err)) == 0, "load");
	fp = open_memstream(&out, &outlen);
	cfg_print_config(fp, t);
	fclose(fp);
	ok(strstr(out, "heartbeat_interval = 30s  # default\n") != NULL,
	    "print-config line 'key = value  # source'");
	ok(strstr(out, "flood_limit = 5  # flag\n") != NULL, "source flag printed");
	ok(strstr(out, "relay_url = \"ws://h/ws #frag\"  # env\n") != NULL,
	    "a value with ' #' is quoted");
	ok(strstr(out, "# db = (unset)\n") != NULL, "unset rows are commented out");

	/* The printed configuration loads back to the same values. */
	clear_env();
	args(u, &cli, err, sizeof(err), "--config", write_file("rt.conf", out), NULL);
	if (!ok(cfg_load(u, &cli, err, sizeof(err)) == 0, "print-config output loads"))
		diag("%s", err);
	for (i = 0; proto[i].env != NULL; i++) {
		const char *a = t[i].value, *b = u[i].value;
		if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
			same = 0;
	}
	ok(same, "and gives the same values");
	free(out);
	cfg_free(t);
	cfg_free(u);
}

static void
test_args(void)
{
	struct cfg_opt	*t = cfg_dup(proto);
	struct cfg_cli	 cli;
	char		 err[512];

	clear_env();
	ok(args(t, &cli, err, sizeof(err), "--bogus", NULL) == -1 &&
	    strstr(err, "unknown option '--bogus'"), "unknown flag: %s", err);
	ok(args(t, &cli, err, sizeof(err), "--heartbeat-interval", NULL) == -1 &&
	    strstr(err, "--heartbeat-interval needs a DURATION"), "missing value: %s", err);
	ok(args(t, &cli, err, sizeof(err), "stray", NULL) == -1,
	    "positional argument refused");
	ok(args(t, &cli, err, sizeof(err), "--heartbeat-intervalx=1", NULL) == -1,
	    "a flag prefix does not match");
	ok(args(t, &cli, err, sizeof(err), "--config", NULL) == -1, "--config needs FILE");
	args(t, &cli, err, sizeof(err), "--help", NULL);
	is_int(cli.action, CFG_HELP, "--help");
	args(t, &cli, err, sizeof(err), "-V", NULL);
	is_int(cli.action, CFG_VERSION, "-V");
	args(t, &cli, err, sizeof(err), "--check-config", NULL);
	is_int(cli.action, CFG_CHECK, "--check-config");
	args(t, &cli, err, sizeof(err), "--print-config", NULL);
	is_int(cli.action, CFG_PRINT, "--print-config");
	args(t, &cli, err, sizeof(err), "--max-frame", "1k", "--max-frame", "2k", NULL);
	ok(cli.nflags == 1 && strcmp(cli.flag_val[0], "2k") == 0,
	    "a repeated flag: the last wins");
	args(t, &cli, err, sizeof(err), "--config=/x.conf", NULL);
	is_str(cli.config_file, "/x.conf", "--config=FILE");
	cfg_free(t);
}

static void
test_help(void)
{
	char	*out = NULL;
	size_t	 outlen = 0, i;
	FILE	*fp;
	int	 all = 1;

	fp = open_memstream(&out, &outlen);
	cfg_print_help(fp, "parley-relay", "[options]", proto);
	fclose(fp);
	for (i = 0; proto[i].env != NULL; i++)
		if (strstr(out, proto[i].env) == NULL)
			all = 0;
	ok(all, "--help lists every row's environment name");
	ok(strstr(out, "--heartbeat-interval DURATION") != NULL &&
	    strstr(out, "ping interval (env WS_HEARTBEAT_INTERVAL, default 30s") != NULL,
	    "--help row: '--flag METAVAR  help (env ENV, default X)'");
	ok(strstr(out, "--check-config") && strstr(out, "--print-config") &&
	    strstr(out, "--config FILE"), "--help lists the standard options");
	free(out);
}

static void
test_dup(void)
{
	struct cfg_opt	*t = cfg_dup(proto), *c;
	struct cfg_cli	 cli;
	char		 err[256];

	clear_env();
	args(t, &cli, err, sizeof(err), "--relay-url", "wss://a", NULL);
	cfg_load(t, &cli, err, sizeof(err));
	c = cfg_dup(t);
	ok(c != NULL && c[5].value != t[5].value &&
	    strcmp(c[5].value, "wss://a") == 0 && c[5].src == CFG_SRC_FLAG,
	    "cfg_dup copies values and sources");
	cfg_clear(t);
	ok(t[5].value == NULL && c[5].value != NULL, "cfg_clear leaves the copy alone");
	cfg_free(c);
	cfg_free(t);
}

int
main(void)
{
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	test_key();
	test_precedence();
	test_bad_reload();
	test_secrets();
	test_print_roundtrip();
	test_args();
	test_help();
	test_dup();
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			diag("could not remove %s", tmpdir);
	}
	done_testing();
	return exit_status();
}
