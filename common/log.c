/*
 * log.c: leveled log lines on standard error, one write(2) per line.
 *
 * Each line is "prog[pid]: level message" and is formatted into a stack
 * buffer first, so lines from different threads never interleave and no
 * lock is taken.  Control characters in the message are replaced with '?',
 * so a client-supplied string cannot forge a second log line.  Lines longer
 * than the buffer are cut and end in "...".
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define LOG_LINE_MAX	2048

_Atomic int	 log_level = LOG_LEVEL_INFO;
static char	 log_prog[64] = "parley";

static const char *const log_names[] = { "error", "warn", "info", "debug" };

/* Set the program name and level (call once at startup, before threads). */
void
log_init(const char *progname, enum log_level level)
{
	const char	*base;

	if (progname != NULL) {
		base = strrchr(progname, '/');
		util_strlcpy(log_prog, base ? base + 1 : progname,
		    sizeof(log_prog));
	}
	log_level = level;
}

/* "error", "warn" (or "warning"), "info", "debug" -> level, or -1. */
int
log_level_parse(const char *s)
{
	size_t	i;

	if (s == NULL)
		return -1;
	for (i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++)
		if (strcasecmp(s, log_names[i]) == 0)
			return (int)i;
	if (strcasecmp(s, "warning") == 0)
		return LOG_LEVEL_WARN;
	return -1;
}

/* Name of a level; "?" for values outside the enum. */
const char *
log_level_name(enum log_level level)
{
	if ((int)level < 0 || (size_t)level >= sizeof(log_names) / sizeof(log_names[0]))
		return "?";
	return log_names[level];
}

/* Append a vsnprintf result to line; returns the new length, capped. */
static size_t
log_append(char *line, size_t room, size_t len, int n, int *trunc)
{
	if (n < 0)
		return len;
	if (len + (size_t)n > room) {
		*trunc = 1;
		return room;
	}
	return len + (size_t)n;
}

/* Append a string to line without formatting; returns the new length. */
static size_t
log_puts(char *line, size_t room, size_t len, const char *s, int *trunc)
{
	size_t	n = strlen(s);

	if (n > room - len) {
		n = room - len;
		*trunc = 1;
	}
	memcpy(line + len, s, n);
	return len + n;
}

/* Emit one line unconditionally (the macros check the level). */
void
log_vemit(enum log_level level, int with_errno, const char *fmt, va_list ap)
{
	char	 line[LOG_LINE_MAX], ebuf[128];
	const size_t room = sizeof(line) - 1;	/* last byte: '\n' */
	const char *estr;
	int	 saved = errno, trunc = 0;
	size_t	 len, start, i;
	ssize_t	 w;

	len = log_append(line, room, 0, snprintf(line, room + 1, "%s[%ld]: %s ",
	    log_prog, (long)getpid(), log_level_name(level)), &trunc);
	start = len;
	len = log_append(line, room, len,
	    vsnprintf(line + len, room + 1 - len, fmt, ap), &trunc);
	/* Neutralise control characters coming from the message. */
	for (i = start; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c == 0x7f)
			line[i] = '?';
	}
	if (with_errno) {
		estr = strerror_r(saved, ebuf, sizeof(ebuf));
		len = log_puts(line, room, len, ": ", &trunc);
		len = log_puts(line, room, len, estr, &trunc);
	}
	if (trunc)
		memcpy(line + room - 3, "...", 3);
	line[len++] = '\n';
	do {
		w = write(STDERR_FILENO, line, len);
	} while (w < 0 && errno == EINTR);
	errno = saved;
}

/* printf-style front end of log_vemit. */
void
log_emit(enum log_level level, int with_errno, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vemit(level, with_errno, fmt, ap);
	va_end(ap);
}

/* Log at error level with strerror(errno) appended, and exit(1). */
void
fatal(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_ERROR, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Log at error level and exit(1). */
void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

static long
log_mono_s(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec + 1;	/* never 0: 0 means "no line yet" */
}

/*
 * One line per interval per call site.  Returns -1 to suppress, else how
 * many lines were suppressed since the last one that passed.
 */
int
log_ratelimit_pass(struct log_ratelimit *rl, int interval_s)
{
	long	now = log_mono_s();
	int	ret;

	while (__atomic_exchange_n(&rl->lock, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&rl->lock, __ATOMIC_RELAXED))
			;
	if (rl->last == 0 || now - rl->last >= interval_s) {
		ret = rl->suppressed;
		rl->suppressed = 0;
		rl->last = now;
	} else {
		rl->suppressed++;
		ret = -1;
	}
	__atomic_store_n(&rl->lock, 0, __ATOMIC_RELEASE);
	return ret;
}
