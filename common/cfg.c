/*
 * cfg.c: command line, environment and configuration file into one table.
 *
 * cfg_load builds every value into scratch arrays (defaults, then the file,
 * then the environment, then flags, each overriding the previous), parses
 * the typed ones, and only when all of that succeeded moves the result into
 * the table, so a failed reload leaves the old settings in place.
 *
 * File syntax: one "key = value" per line; blank lines and lines starting
 * with '#' are ignored; " #" after a value starts a comment; a value may be
 * written in double quotes (with \" and \\ escapes) to keep spaces or '#'.
 * --print-config writes this syntax, so its output can be loaded again.
 *
 * Errors never echo the value of a CFG_SECRET row.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "cfg.h"
#include "util.h"

static const char *const cfg_type_names[] = {
	[CFG_STRING] = "string", [CFG_INT] = "integer", [CFG_BOOL] = "boolean",
	[CFG_DURATION] = "duration", [CFG_SIZE] = "size", [CFG_SECRET] = "secret",
};

static size_t
cfg_count(const struct cfg_opt *opts)
{
	size_t	n = 0;

	while (opts[n].env != NULL)
		n++;
	return n;
}

/* Name of a source for --print-config and error messages. */
const char *
cfg_source_name(enum cfg_source src)
{
	switch (src) {
	case CFG_SRC_DEFAULT:
		return "default";
	case CFG_SRC_FILE:
		return "file";
	case CFG_SRC_ENV:
		return "env";
	case CFG_SRC_FLAG:
		return "flag";
	case CFG_SRC_UNSET:
	default:
		return "unset";
	}
}

/* File key: env name lower-cased, without a PARLEY_ or WS_ prefix. */
const char *
cfg_key(const struct cfg_opt *opt, char *buf, size_t buflen)
{
	const char	*s = opt->env;
	size_t		 i;

	if (buflen == 0)
		return buf;
	if (strncmp(s, "PARLEY_", 7) == 0)
		s += 7;
	else if (strncmp(s, "WS_", 3) == 0)
		s += 3;
	for (i = 0; s[i] != '\0' && i + 1 < buflen; i++)
		buf[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] - 'A' + 'a' : s[i]);
	buf[i] = '\0';
	return buf;
}

/* Row of the table by environment name, or NULL. */
const struct cfg_opt *
cfg_find(const struct cfg_opt *opts, const char *env)
{
	size_t	i;

	if (opts == NULL || env == NULL)
		return NULL;
	for (i = 0; opts[i].env != NULL; i++)
		if (strcmp(opts[i].env, env) == 0)
			return &opts[i];
	return NULL;
}

/* Text value of a row, or NULL when unset or unknown. */
const char *
cfg_str(const struct cfg_opt *opts, const char *env)
{
	const struct cfg_opt	*o = cfg_find(opts, env);

	return o ? o->value : NULL;
}

/* Parsed number of a row (ms for durations, bytes for sizes), 0 if unknown. */
int64_t
cfg_num(const struct cfg_opt *opts, const char *env)
{
	const struct cfg_opt	*o = cfg_find(opts, env);

	return o ? o->num : 0;
}

static int
cfg_is_option(const char *arg, const char *name, const char **val)
{
	size_t	n = strlen(name);

	if (strncmp(arg, "--", 2) != 0 || strncmp(arg + 2, name, n) != 0)
		return 0;
	if (arg[2 + n] == '\0') {
		*val = NULL;
		return 1;
	}
	if (arg[2 + n] == '=') {
		*val = arg + 3 + n;
		return 1;
	}
	return 0;
}

/* Parse argv into *cli; see cfg.h. */
int
cfg_parse_args(const struct cfg_opt *opts, int argc, char **argv,
    struct cfg_cli *cli, char *err, size_t errlen)
{
	const char	*arg, *val;
	int		 i, k, j, found;

	memset(cli, 0, sizeof(*cli));
	for (i = 1; i < argc; i++) {
		arg = argv[i];
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			cli->action = CFG_HELP;
			continue;
		}
		if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) {
			if (cli->action != CFG_HELP)
				cli->action = CFG_VERSION;
			continue;
		}
		if (strcmp(arg, "--check-config") == 0) {
			if (cli->action == CFG_RUN || cli->action == CFG_PRINT)
				cli->action = CFG_CHECK;
			continue;
		}
		if (strcmp(arg, "--print-config") == 0) {
			if (cli->action == CFG_RUN)
				cli->action = CFG_PRINT;
			continue;
		}
		if (cfg_is_option(arg, "config", &val)) {
			if (val == NULL) {
				if (i + 1 >= argc) {
					util_errf(err, errlen, "option --config needs a FILE");
					return -1;
				}
				val = argv[++i];
			}
			cli->config_file = val;
			continue;
		}
		found = 0;
		for (k = 0; opts != NULL && opts[k].env != NULL; k++) {
			if (opts[k].flag == NULL ||
			    !cfg_is_option(arg, opts[k].flag, &val))
				continue;
			if (val == NULL) {
				if (i + 1 >= argc) {
					util_errf(err, errlen, "option --%s needs a %s",
					    opts[k].flag, opts[k].metavar ?
					    opts[k].metavar : "value");
					return -1;
				}
				val = argv[++i];
			}
			/* A repeated flag: the last one wins. */
			for (j = 0; j < cli->nflags; j++)
				if (strcmp(cli->flag_env[j], opts[k].env) == 0)
					break;
			if (j == cli->nflags) {
				if (cli->nflags >= (int)(sizeof(cli->flag_env) /
				    sizeof(cli->flag_env[0]))) {
					util_errf(err, errlen, "too many options");
					return -1;
				}
				cli->nflags++;
			}
			cli->flag_env[j] = opts[k].env;
			cli->flag_val[j] = val;
			found = 1;
			break;
		}
		if (!found) {
			if (strncmp(arg, "-", 1) == 0)
				util_errf(err, errlen, "unknown option '%.64s' (try --help)", arg);
			else
				util_errf(err, errlen, "unexpected argument '%.64s' (try --help)", arg);
			return -1;
		}
	}
	if (cli->config_file == NULL) {
		val = getenv("PARLEY_CONFIG");
		if (val != NULL && *val != '\0')
			cli->config_file = val;
	}
	return 0;
}

/* Scratch values of one load. */
struct cfg_work {
	size_t		 n;
	char		**val;
	enum cfg_source	*src;
	int64_t		*num;
	int		*line;	/* file line a value came from, for errors */
};

static int
cfg_set(struct cfg_work *w, size_t i, const char *v, size_t len,
    enum cfg_source src)
{
	char	*copy;

	if ((copy = strndup(v, len)) == NULL)
		return -1;
	if (w->val[i] != NULL) {
		explicit_bzero(w->val[i], strlen(w->val[i]));
		free(w->val[i]);
	}
	w->val[i] = copy;
	w->src[i] = src;
	return 0;
}

static int
cfg_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Value part of a file line (after '='): quoted or bare with an optional
 * " #comment".  Writes the value into line itself; returns its length or -1.
 */
static ssize_t
cfg_file_value(char *s, char **out)
{
	char	*r, *w, *end;

	while (cfg_space(*s))
		s++;
	if (*s == '"') {
		r = w = s + 1;
		for (;;) {
			if (*r == '\0')
				return -1;	/* unterminated */
			if (*r == '"')
				break;
			if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
				r++;
			*w++ = *r++;
		}
		end = w;
		r++;
		while (cfg_space(*r))
			r++;
		if (*r != '\0' && *r != '#')
			return -1;	/* junk after the closing quote */
		*out = s + 1;
		return end - (s + 1);
	}
	end = s;
	for (r = s; *r != '\0'; r++) {
		if (*r == '#' && (r == s || cfg_space(r[-1])))
			break;
		if (!cfg_space(*r))
			end = r + 1;
	}
	*out = s;
	return end - s;
}

static int
cfg_read_file(const struct cfg_opt *opts, struct cfg_work *w, const char *path,
    char *err, size_t errlen)
{
	FILE	*fp;
	char	*line = NULL, *p, *eq, *kend, *val, key[128];
	size_t	 cap = 0, i;
	ssize_t	 len, vlen;
	int	 lineno = 0, rc = -1;

	if ((fp = fopen(path, "re")) == NULL) {
		util_errf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((len = getline(&line, &cap, fp)) >= 0) {
		lineno++;
		if ((size_t)len != strlen(line)) {
			util_errf(err, errlen, "%s:%d: NUL byte in line", path, lineno);
			goto out;
		}
		p = line;
		while (cfg_space(*p))
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		if ((eq = strchr(p, '=')) == NULL) {
			util_errf(err, errlen, "%s:%d: expected 'key = value'",
			    path, lineno);
			goto out;
		}
		kend = eq;
		while (kend > p && cfg_space(kend[-1]))
			kend--;
		*kend = '\0';
		for (i = 0; i < w->n; i++)
			if (strcmp(cfg_key(&opts[i], key, sizeof(key)), p) == 0)
				break;
		if (i == w->n) {
			util_errf(err, errlen, "%s:%d: unknown key '%.64s'", path,
			    lineno, p);
			goto out;
		}
		if (w->src[i] == CFG_SRC_FILE) {
			util_errf(err, errlen, "%s:%d: duplicate key '%s' (first on line %d)",
			    path, lineno, p, w->line[i]);
			goto out;
		}
		if ((vlen = cfg_file_value(eq + 1, &val)) < 0) {
			util_errf(err, errlen, "%s:%d: %s: bad quoting", path,
			    lineno, p);
			goto out;
		}
		if (cfg_set(w, i, val, (size_t)vlen, CFG_SRC_FILE) < 0) {
			util_errf(err, errlen, "out of memory");
			goto out;
		}
		w->line[i] = lineno;
	}
	if (ferror(fp)) {
		util_errf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (line != NULL) {
		explicit_bzero(line, cap);
		free(line);
	}
	fclose(fp);
	return rc;
}

static int
cfg_parse_bool(const char *s, int64_t *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	size_t	i;

	for (i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* Where row i's value came from, for an error message. */
static void
cfg_origin(const struct cfg_opt *o, const struct cfg_work *w, size_t i,
    const char *path, char *buf, size_t len)
{
	switch (w->src[i]) {
	case CFG_SRC_FLAG:
		snprintf(buf, len, "flag --%s", o->flag ? o->flag : "?");
		break;
	case CFG_SRC_ENV:
		snprintf(buf, len, "environment %s", o->env);
		break;
	case CFG_SRC_FILE:
		snprintf(buf, len, "%s:%d", path ? path : "file", w->line[i]);
		break;
	default:
		snprintf(buf, len, "default");
		break;
	}
}

static int
cfg_parse_typed(const struct cfg_opt *opts, struct cfg_work *w,
    const char *path, char *err, size_t errlen)
{
	char		 key[128], origin[300];
	const char	*v;
	size_t		 i;
	int		 r;

	for (i = 0; i < w->n; i++) {
		w->num[i] = 0;
		if ((v = w->val[i]) == NULL)
			continue;
		switch (opts[i].type) {
		case CFG_INT:
			r = util_parse_int64(v, &w->num[i]);
			break;
		case CFG_BOOL:
			r = cfg_parse_bool(v, &w->num[i]);
			break;
		case CFG_DURATION:
			r = util_parse_duration(v, &w->num[i]);
			break;
		case CFG_SIZE:
			r = util_parse_size(v, &w->num[i]);
			break;
		case CFG_STRING:
		case CFG_SECRET:
		default:
			r = 0;
			break;
		}
		if (r == 0)
			continue;
		cfg_key(&opts[i], key, sizeof(key));
		cfg_origin(&opts[i], w, i, path, origin, sizeof(origin));
		util_errf(err, errlen, "%s: invalid %s '%.64s' (from %s)", key,
		    cfg_type_names[opts[i].type], v, origin);
		return -1;
	}
	return 0;
}

static void
cfg_work_free(struct cfg_work *w)
{
	size_t	i;

	if (w->val != NULL) {
		for (i = 0; i < w->n; i++) {
			if (w->val[i] == NULL)
				continue;
			explicit_bzero(w->val[i], strlen(w->val[i]));
			free(w->val[i]);
		}
	}
	free(w->val);
	free(w->src);
	free(w->num);
	free(w->line);
}

/* Build every value, then move them into the table; see cfg.h. */
int
cfg_load(struct cfg_opt *opts, const struct cfg_cli *cli, char *err,
    size_t errlen)
{
	struct cfg_work	 w;
	const char	*path, *ev;
	size_t		 i;
	int		 f, rc = -1;

	memset(&w, 0, sizeof(w));
	w.n = cfg_count(opts);
	w.val = calloc(w.n + 1, sizeof(*w.val));
	w.src = calloc(w.n + 1, sizeof(*w.src));
	w.num = calloc(w.n + 1, sizeof(*w.num));
	w.line = calloc(w.n + 1, sizeof(*w.line));
	if (!w.val || !w.src || !w.num || !w.line) {
		util_errf(err, errlen, "out of memory");
		goto out;
	}
	for (i = 0; i < w.n; i++)
		if (opts[i].def != NULL &&
		    cfg_set(&w, i, opts[i].def, strlen(opts[i].def),
		    CFG_SRC_DEFAULT) < 0) {
			util_errf(err, errlen, "out of memory");
			goto out;
		}

	if (cli != NULL)
		path = cli->config_file;
	else if ((path = getenv("PARLEY_CONFIG")) != NULL && *path == '\0')
		path = NULL;
	if (path != NULL && cfg_read_file(opts, &w, path, err, errlen) < 0)
		goto out;

	/* An empty environment variable counts as not set. */
	for (i = 0; i < w.n; i++)
		if ((ev = getenv(opts[i].env)) != NULL && *ev != '\0' &&
		    cfg_set(&w, i, ev, strlen(ev), CFG_SRC_ENV) < 0) {
			util_errf(err, errlen, "out of memory");
			goto out;
		}

	for (f = 0; cli != NULL && f < cli->nflags; f++) {
		for (i = 0; i < w.n; i++)
			if (strcmp(opts[i].env, cli->flag_env[f]) == 0)
				break;
		if (i == w.n)
			continue;
		if (cfg_set(&w, i, cli->flag_val[f], strlen(cli->flag_val[f]),
		    CFG_SRC_FLAG) < 0) {
			util_errf(err, errlen, "out of memory");
			goto out;
		}
	}

	if (cfg_parse_typed(opts, &w, path, err, errlen) < 0)
		goto out;

	/* Commit: nothing can fail from here on. */
	cfg_clear(opts);
	for (i = 0; i < w.n; i++) {
		opts[i].value = w.val[i];
		opts[i].src = w.val[i] != NULL ? w.src[i] : CFG_SRC_UNSET;
		w.val[i] = NULL;
		opts[i].num = w.num[i];
	}
	rc = 0;
out:
	cfg_work_free(&w);
	return rc;
}

/* Deep copy including the terminating row; NULL on allocation failure. */
struct cfg_opt *
cfg_dup(const struct cfg_opt *opts)
{
	struct cfg_opt	*c;
	size_t		 n = cfg_count(opts), i;

	if ((c = calloc(n + 1, sizeof(*c))) == NULL)
		return NULL;
	memcpy(c, opts, (n + 1) * sizeof(*c));
	for (i = 0; i < n; i++) {
		if (opts[i].value == NULL)
			continue;
		if ((c[i].value = strdup(opts[i].value)) == NULL) {
			while (i-- > 0)
				free(c[i].value);
			free(c);
			return NULL;
		}
	}
	return c;
}

/* Release the values of a table (secrets wiped); rows become unset. */
void
cfg_clear(struct cfg_opt *opts)
{
	size_t	i;

	if (opts == NULL)
		return;
	for (i = 0; opts[i].env != NULL; i++) {
		if (opts[i].value != NULL) {
			explicit_bzero(opts[i].value, strlen(opts[i].value));
			free(opts[i].value);
		}
		opts[i].value = NULL;
		opts[i].num = 0;
		opts[i].src = CFG_SRC_UNSET;
	}
}

/* Release a table made by cfg_dup. */
void
cfg_free(struct cfg_opt *opts)
{
	if (opts == NULL)
		return;
	cfg_clear(opts);
	free(opts);
}

/* --help: usage, the standard options, then one line per row. */
void
cfg_print_help(FILE *fp, const char *progname, const char *synopsis,
    const struct cfg_opt *opts)
{
	char	left[160], key[128];
	size_t	i;

	fprintf(fp, "usage: %s %s\n\n", progname, synopsis ? synopsis : "[options]");
	fprintf(fp, "  %-34s %s\n", "-h, --help", "show this help and exit");
	fprintf(fp, "  %-34s %s\n", "-V, --version", "show the version and exit");
	fprintf(fp, "  %-34s %s\n", "--config FILE",
	    "read settings from FILE (env PARLEY_CONFIG)");
	fprintf(fp, "  %-34s %s\n", "--check-config",
	    "load and validate the configuration, print \"ok\", exit");
	fprintf(fp, "  %-34s %s\n", "--print-config",
	    "print every setting and where it came from, exit");
	fputc('\n', fp);
	for (i = 0; opts[i].env != NULL; i++) {
		if (opts[i].flag != NULL)
			snprintf(left, sizeof(left), "--%s %s", opts[i].flag,
			    opts[i].metavar ? opts[i].metavar : "VALUE");
		else
			snprintf(left, sizeof(left), "(file key %s)",
			    cfg_key(&opts[i], key, sizeof(key)));
		fprintf(fp, "  %-34s %s (env %s", left,
		    opts[i].help ? opts[i].help : "", opts[i].env);
		if (opts[i].def != NULL && opts[i].type != CFG_SECRET)
			fprintf(fp, ", default %s", *opts[i].def ? opts[i].def : "\"\"");
		fprintf(fp, "%s)\n", opts[i].reloadable ? ", reloadable" : "");
	}
	fprintf(fp, "\nFile keys are the environment names in lower case without "
	    "PARLEY_ or WS_.\nPrecedence: flags > environment > file > defaults.\n");
}

/* Does a value need quotes to load back the same from a file? */
static int
cfg_needs_quotes(const char *v)
{
	size_t	n = strlen(v), i;

	if (n == 0 || cfg_space(v[0]) || cfg_space(v[n - 1]) || v[0] == '"' ||
	    v[0] == '#')
		return 1;
	for (i = 1; i < n; i++)
		if (v[i] == '#' && cfg_space(v[i - 1]))
			return 1;
	return 0;
}

/* --print-config: "key = value  # source" per row; secrets as "(set)". */
void
cfg_print_config(FILE *fp, const struct cfg_opt *opts)
{
	char		 key[128];
	const char	*v, *p;
	size_t		 i;

	for (i = 0; opts[i].env != NULL; i++) {
		cfg_key(&opts[i], key, sizeof(key));
		v = opts[i].value;
		if (v == NULL) {
			fprintf(fp, "# %s = (unset)\n", key);
			continue;
		}
		if (opts[i].type == CFG_SECRET) {
			fprintf(fp, "%s = (set)  # %s\n", key,
			    cfg_source_name(opts[i].src));
			continue;
		}
		if (!cfg_needs_quotes(v)) {
			fprintf(fp, "%s = %s  # %s\n", key, v,
			    cfg_source_name(opts[i].src));
			continue;
		}
		fprintf(fp, "%s = \"", key);
		for (p = v; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				fputc('\\', fp);
			fputc(*p, fp);
		}
		fprintf(fp, "\"  # %s\n", cfg_source_name(opts[i].src));
	}
}
