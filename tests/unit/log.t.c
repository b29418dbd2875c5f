/*
 * log.t.c: unit tests of common/log.c: line format, levels, errno text,
 * control characters, truncation, whole lines under threads, fatalx, and
 * the rate-limited warning macro.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"

static char	capture_path[] = "/tmp/parley-log-test-XXXXXX";
static int	saved_stderr = -1;

/* Send stderr to a fresh temporary file. */
static void
capture_start(void)
{
	int	fd;

	fflush(stderr);
	if (saved_stderr < 0)
		saved_stderr = dup(STDERR_FILENO);
	strcpy(capture_path, "/tmp/parley-log-test-XXXXXX");
	if ((fd = mkstemp(capture_path)) < 0)
		abort();
	close(fd);
	fd = open(capture_path, O_WRONLY | O_APPEND | O_TRUNC);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

/* Restore stderr and return what was written (malloc'd). */
static char *
capture_end(void)
{
	FILE	*fp;
	char	*buf;
	long	 n;

	dup2(saved_stderr, STDERR_FILENO);
	fp = fopen(capture_path, "r");
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	buf = calloc(1, (size_t)n + 1);
	if (fread(buf, 1, (size_t)n, fp) != (size_t)n)
		buf[0] = '\0';
	fclose(fp);
	unlink(capture_path);
	return buf;
}

static int	evaluated;

static int
side_effect(void)
{
	evaluated++;
	return 1;
}

static int
count_lines(const char *s)
{
	int	n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void
test_format(void)
{
	char	 want[256], *out, big[5000];

	log_init("/usr/sbin/parley-relay", LOG_LEVEL_INFO);
	capture_start();
	log_warnx("conn=%d uid=%d: auth: %s", 17, 42, "token expired");
	out = capture_end();
	snprintf(want, sizeof(want), "parley-relay[%ld]: warn conn=17 uid=42: auth: "
	    "token expired\n", (long)getpid());
	is_str(out, want, "line format is 'prog[pid]: level message'");
	free(out);

	capture_start();
	errno = ENOENT;
	log_warn("open %s", "/nonexistent");
	out = capture_end();
	snprintf(want, sizeof(want), "parley-relay[%ld]: warn open /nonexistent: %s\n",
	    (long)getpid(), strerror(ENOENT));
	is_str(out, want, "log_warn appends strerror(errno)");
	free(out);

	capture_start();
	log_info("name=%s", "evil\nparley-relay[1]: error forged");
	out = capture_end();
	is_int(count_lines(out), 1, "a newline in an argument cannot start a new line");
	ok(strstr(out, "evil?parley-relay") != NULL, "control characters become '?'");
	free(out);

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	capture_start();
	log_info("%s", big);
	out = capture_end();
	ok(strlen(out) <= 2048 && count_lines(out) == 1 &&
	    strcmp(out + strlen(out) - 4, "...\n") == 0,
	    "an overlong line is cut to 2048 bytes ending in '...'");
	free(out);
}

static void
test_levels(void)
{
	char	*out;

	is_int(log_level_parse("error"), LOG_LEVEL_ERROR, "parse 'error'");
	is_int(log_level_parse("warn"), LOG_LEVEL_WARN, "parse 'warn'");
	is_int(log_level_parse("INFO"), LOG_LEVEL_INFO, "parse 'INFO'");
	is_int(log_level_parse("debug"), LOG_LEVEL_DEBUG, "parse 'debug'");
	is_int(log_level_parse("verbose"), -1, "parse 'verbose' fails");
	is_str(log_level_name(LOG_LEVEL_DEBUG), "debug", "name of debug");

	log_level = LOG_LEVEL_WARN;
	evaluated = 0;
	capture_start();
	log_info("x %d", side_effect());
	log_debug("x %d", side_effect());
	log_warnx("shown %d", side_effect());
	log_error("error %d", 1);
	out = capture_end();
	is_int(count_lines(out), 2, "info and debug suppressed at level warn");
	is_int(evaluated, 1, "arguments of a suppressed line are not evaluated");
	free(out);
	log_level = LOG_LEVEL_INFO;
}

static void
test_fatal(void)
{
	int	status = 0;
	pid_t	pid;

	capture_start();
	if ((pid = fork()) == 0)
		fatalx("cannot start: %s", "bad key");
	waitpid(pid, &status, 0);
	{
		char *out = capture_end();
		ok(WIFEXITED(status) && WEXITSTATUS(status) == 1, "fatalx exits 1");
		ok(strstr(out, "error cannot start: bad key\n") != NULL,
		    "fatalx logs at error level");
		free(out);
	}
}

static void
emit_limited(int i)
{
	log_warnx_ratelimited(2, "client %d sent junk", i);
}

static void
test_ratelimit(void)
{
	struct log_ratelimit	 rl = { 0 };
	char			*out;
	int			 i, sup = 0;

	is_int(log_ratelimit_pass(&rl, 60), 0, "first line passes with 0 suppressed");
	for (i = 0; i < 5; i++)
		sup += log_ratelimit_pass(&rl, 60) == -1;
	is_int(sup, 5, "the next 5 within the interval are suppressed");
	rl.last -= 60;
	is_int(log_ratelimit_pass(&rl, 60), 5, "after the interval: passes, reports 5");
	is_int(log_ratelimit_pass(&rl, 60), -1, "and the counting starts again");

	capture_start();
	for (i = 0; i < 10; i++)
		emit_limited(i);
	usleep(2100 * 1000);
	emit_limited(10);
	out = capture_end();
	is_int(count_lines(out), 3, "macro: 11 calls over 2 s give 3 lines");
	ok(strstr(out, "client 0 sent junk") != NULL, "macro: the first line is shown");
	ok(strstr(out, "client 1 sent") == NULL, "macro: the second is suppressed");
	ok(strstr(out, "(9 similar lines suppressed)") != NULL,
	    "macro: the count of suppressed lines is reported");
	ok(strstr(out, "client 10 sent junk") != NULL,
	    "macro: a line passes after the interval");
	free(out);
}

static struct log_ratelimit	shared_rl;
static int			passed[4];

static void *
writer(void *arg)
{
	int	id = (int)(intptr_t)arg, i;

	for (i = 0; i < 500; i++) {
		log_info("thread %d line %d %s", id, i,
		    "padding-padding-padding-padding-padding-padding-padding");
		if (log_ratelimit_pass(&shared_rl, 3600) >= 0)
			passed[id]++;
	}
	return NULL;
}

static void
test_threads(void)
{
	pthread_t	 t[4];
	char		*out, *line, *save = NULL, want[64];
	int		 i, good = 0, total = 0;

	capture_start();
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	out = capture_end();
	snprintf(want, sizeof(want), "parley-relay[%ld]: info thread ", (long)getpid());
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		total++;
		if (strncmp(line, want, strlen(want)) == 0 &&
		    strstr(line, "padding-padding-padding-padding-padding-padding-padding") ==
		    line + strlen(line) - 55)
			good++;
	}
	is_int(total, 2000, "4 threads x 500 lines give 2000 lines");
	is_int(good, 2000, "every line is whole (no interleaving)");
	is_int(passed[0] + passed[1] + passed[2] + passed[3], 1,
	    "a shared rate limit lets exactly one line through under contention");
	free(out);
}

int
main(void)
{
	test_format();
	test_levels();
	test_fatal();
	test_ratelimit();
	test_threads();
	done_testing();
	return exit_status();
}
