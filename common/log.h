/*
 * log.h: the one logging API of both programs.
 *
 * Lines go to standard error (journald or the web server's error log picks
 * them up), one write(2) each so threads never interleave:
 *
 *	parley-relay[812]: warn conn=17 uid=42 ip=127.0.0.1: auth: token expired
 *
 * log_warn appends ": strerror(errno)", log_warnx does not.  The level is
 * checked before the arguments are evaluated.  Never pass a password, a
 * cookie, a token or a message body to these functions.
 */
#ifndef PARLEY_LOG_H
#define PARLEY_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG
};

/* Read by every thread, changed by a reload: atomic, so no data race. */
extern _Atomic int log_level;

/* Set the program name shown in every line (PID is appended). */
void	log_init(const char *progname, enum log_level);

/* Parse "error", "warn", "info" or "debug".  Returns the level, or -1. */
int	log_level_parse(const char *);
const char *log_level_name(enum log_level);

void	log_emit(enum log_level, int with_errno, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
void	log_vemit(enum log_level, int with_errno, const char *fmt, va_list)
	    __attribute__((format(printf, 3, 0)));

/* Startup errors only: log and exit(1).  Never for a client's input. */
void	fatal(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

#define log_error(...)	do { log_emit(LOG_LEVEL_ERROR, 0, __VA_ARGS__); } while (0)
#define log_warn(...)	do { if (log_level >= LOG_LEVEL_WARN) \
		log_emit(LOG_LEVEL_WARN, 1, __VA_ARGS__); } while (0)
#define log_warnx(...)	do { if (log_level >= LOG_LEVEL_WARN) \
		log_emit(LOG_LEVEL_WARN, 0, __VA_ARGS__); } while (0)
#define log_info(...)	do { if (log_level >= LOG_LEVEL_INFO) \
		log_emit(LOG_LEVEL_INFO, 0, __VA_ARGS__); } while (0)
#define log_debug(...)	do { if (log_level >= LOG_LEVEL_DEBUG) \
		log_emit(LOG_LEVEL_DEBUG, 0, __VA_ARGS__); } while (0)

/*
 * A warning that may be triggered by clients: at most one line per
 * `interval_s` seconds per call site, with a count of the suppressed ones.
 */
#define log_warnx_ratelimited(interval_s, ...) do {			\
	static struct log_ratelimit log_rl__;				\
	int log_sup__;							\
	if (log_level >= LOG_LEVEL_WARN &&				\
	    (log_sup__ = log_ratelimit_pass(&log_rl__, (interval_s))) >= 0) { \
		if (log_sup__ > 0)					\
			log_emit(LOG_LEVEL_WARN, 0,			\
			    "(%d similar lines suppressed)", log_sup__); \
		log_emit(LOG_LEVEL_WARN, 0, __VA_ARGS__);		\
	}								\
} while (0)

struct log_ratelimit {
	long	last;		/* monotonic seconds of the last line */
	int	suppressed;
	int	lock;		/* spin lock; contention is rare */
};

/* Returns -1 to suppress, else the number suppressed since the last line. */
int	log_ratelimit_pass(struct log_ratelimit *, int interval_s);

#endif
