/*
 * cfg.h: configuration from one table per program.
 *
 * Each option is one row: environment name, long flag, type, default,
 * whether SIGHUP may change it, and help text.  The file key is derived from
 * the environment name (lower case, PARLEY_ or WS_ prefix removed:
 * WS_HEARTBEAT_INTERVAL -> heartbeat_interval).  Precedence is
 * flags > environment > file > default, and every value remembers where it
 * came from, so --print-config can say.
 *
 * A table is an array of rows ending with a row whose env is NULL.  An
 * environment variable set to the empty string counts as not set.  File
 * syntax: "key = value" lines, '#' comment lines, " #" comments after a
 * value, and "double quotes" (with \" and \\) around values that need them.
 *
 * The table drives --help, --print-config, --check-config and the man-page
 * check in the test suite.  cfg never logs and never exits: errors come back
 * in an error buffer the caller prints.
 */
#ifndef PARLEY_CFG_H
#define PARLEY_CFG_H

#include <stdint.h>
#include <stdio.h>

enum cfg_type {
	CFG_STRING,
	CFG_INT,	/* decimal integer */
	CFG_BOOL,	/* 1/0, true/false, yes/no, on/off */
	CFG_DURATION,	/* util_parse_duration: value in milliseconds */
	CFG_SIZE,	/* util_parse_size: value in bytes */
	CFG_SECRET	/* like CFG_STRING, but --print-config shows "(set)" */
};

enum cfg_source {
	CFG_SRC_UNSET = 0,	/* no default and not given */
	CFG_SRC_DEFAULT,
	CFG_SRC_FILE,
	CFG_SRC_ENV,
	CFG_SRC_FLAG
};

struct cfg_opt {
	const char	*env;		/* "WS_HEARTBEAT_INTERVAL" (unique key) */
	const char	*flag;		/* "heartbeat-interval", or NULL */
	enum cfg_type	 type;
	const char	*def;		/* default as text, or NULL (unset) */
	int		 reloadable;	/* may change on SIGHUP */
	const char	*help;		/* one line for --help */
	const char	*metavar;	/* "DURATION", "PATH", ... for --help */

	/* Filled in by cfg_load; do not set in the table. */
	char		*value;		/* text value, or NULL when unset */
	int64_t		 num;		/* parsed INT/BOOL/DURATION/SIZE */
	enum cfg_source	 src;
};

/* What the command line asked for, besides option values. */
enum cfg_action {
	CFG_RUN = 0,
	CFG_HELP,
	CFG_VERSION,
	CFG_CHECK,	/* --check-config: load, validate, print "ok", exit */
	CFG_PRINT	/* --print-config */
};

struct cfg_cli {
	enum cfg_action	 action;
	const char	*config_file;	/* --config FILE, else $PARLEY_CONFIG */
	int		 nflags;	/* flag values given, parallel arrays */
	const char	*flag_env[64];
	const char	*flag_val[64];
};

/*
 * Parse argv: --help/-h, --version/-V, --check-config, --print-config,
 * --config FILE, and "--flag VALUE" or "--flag=VALUE" for each row with a
 * flag.  Returns 0, or -1 with err set (unknown flag, missing value).
 */
int	cfg_parse_args(const struct cfg_opt *, int argc, char **argv,
	    struct cfg_cli *, char *err, size_t errlen);

/*
 * Fill every row's value from flags, environment, the file and defaults, and
 * parse typed values.  Returns 0, or -1 with err set ("heartbeat_interval:
 * invalid duration 'x'", "config.conf:12: unknown key 'foo'").  On failure
 * the table is left as it was, so a bad reload keeps the old settings.
 * Not thread-safe with readers of the same table: reload into a copy
 * (cfg_dup) and swap.
 */
int	cfg_load(struct cfg_opt *, const struct cfg_cli *, char *err, size_t errlen);

/* A deep copy of a table (values included), and its release. */
struct cfg_opt *cfg_dup(const struct cfg_opt *);
void	cfg_free(struct cfg_opt *);	/* only for tables from cfg_dup */
void	cfg_clear(struct cfg_opt *);	/* release values of a static table */

/* Look up by environment name; NULL if there is no such row. */
const struct cfg_opt *cfg_find(const struct cfg_opt *, const char *env);
const char *cfg_str(const struct cfg_opt *, const char *env);	/* NULL if unset */
int64_t	cfg_num(const struct cfg_opt *, const char *env);
/* The file key of a row, e.g. "heartbeat_interval" (static buffer per call site not needed: writes into buf). */
const char *cfg_key(const struct cfg_opt *, char *buf, size_t buflen);

void	cfg_print_help(FILE *, const char *progname, const char *synopsis,
	    const struct cfg_opt *);
void	cfg_print_config(FILE *, const struct cfg_opt *);
const char *cfg_source_name(enum cfg_source);

#endif
