/*
 * tap.h: a tiny Test Anything Protocol harness for the C unit tests.
 *
 * Header only.  plan(n) or done_testing() once, ok()/is_int()/is_str() per
 * check, skip(n, why) for checks that cannot run here, diag() for
 * comments, and `return exit_status();` from main.  Output
 * goes to stdout (TAP) and diagnostics to stderr prefixed with "# ", which
 * is what automake's tap-driver.sh reads.
 */
#ifndef PARLEY_TAP_H
#define PARLEY_TAP_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define TAP_UNUSED	__attribute__((unused))

static int	tap_run;
static int	tap_failed;
static int	tap_planned = -1;

/* Announce the number of tests up front. */
static TAP_UNUSED void
plan(int n)
{
	tap_planned = n;
	printf("1..%d\n", n);
	fflush(stdout);
}

/* Print a diagnostic line ("# ..."). */
static TAP_UNUSED __attribute__((format(printf, 1, 2))) void
diag(const char *fmt, ...)
{
	va_list	ap;

	fflush(stdout);
	fputs("# ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

static TAP_UNUSED int
tap_vok(int cond, const char *fmt, va_list ap)
{
	tap_run++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tap_run);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	return cond;
}

/* One check; returns cond so callers can add diagnostics on failure. */
static TAP_UNUSED __attribute__((format(printf, 2, 3))) int
ok(int cond, const char *fmt, ...)
{
	va_list	ap;
	int	r;

	va_start(ap, fmt);
	r = tap_vok(cond, fmt, ap);
	va_end(ap);
	return r;
}

/* Integer equality, with both values shown on failure. */
static TAP_UNUSED int
is_int(int64_t got, int64_t want, const char *name)
{
	int	r;

	r = ok(got == want, "%s", name);
	if (!r)
		diag("  got %" PRId64 ", want %" PRId64, got, want);
	return r;
}

/* String equality (NULL equals only NULL), with both shown on failure. */
static TAP_UNUSED int
is_str(const char *got, const char *want, const char *name)
{
	int	eq, r;

	if (got == NULL || want == NULL)
		eq = got == want;
	else
		eq = strcmp(got, want) == 0;
	r = ok(eq, "%s", name);
	if (!r)
		diag("  got '%s', want '%s'", got ? got : "(null)",
		    want ? want : "(null)");
	return r;
}

/* Record n checks as skipped (they count as passed), with a reason. */
static TAP_UNUSED void
skip(int n, const char *why)
{
	while (n-- > 0) {
		tap_run++;
		printf("ok %d # SKIP %s\n", tap_run, why);
	}
	fflush(stdout);
}

/* Print the plan at the end instead of the start. */
static TAP_UNUSED void
done_testing(void)
{
	if (tap_planned < 0) {
		printf("1..%d\n", tap_run);
		tap_planned = tap_run;
	}
	fflush(stdout);
}

/* 0 when every planned check ran and passed, else 1. */
static TAP_UNUSED int
exit_status(void)
{
	if (tap_planned >= 0 && tap_planned != tap_run) {
		diag("planned %d tests but ran %d", tap_planned, tap_run);
		return 1;
	}
	if (tap_failed)
		diag("failed %d of %d tests", tap_failed, tap_run);
	return tap_failed ? 1 : 0;
}

#endif
