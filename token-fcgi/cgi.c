/*
 * cgi.c: plain CGI (RFC 3875), one request per process.
 *
 * The request is the environment and standard input, the answer goes to
 * standard output, and the process connects to the database once, answers
 * and exits.  Slow (a process and a connection per request) but it runs
 * under any web server with nothing to keep alive.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "token.h"

static const char *
cgi_param(void *ctx, const char *name)
{
	(void)ctx;
	return getenv(name);
}

static ssize_t
cgi_read(void *ctx, void *buf, size_t n)
{
	ssize_t	r;

	(void)ctx;
	do {
		r = read(STDIN_FILENO, buf, n);
	} while (r < 0 && errno == EINTR);
	return r;
}

static int
cgi_write(void *ctx, const void *buf, size_t n)
{
	const char	*p = buf;
	ssize_t		 w;

	(void)ctx;
	while (n > 0) {
		w = write(STDOUT_FILENO, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static const struct request_io cgi_io = {
	cgi_param, cgi_read, cgi_write
};

/* One request; see token.h. */
int
cgi_run(struct conf *conf)
{
	struct request	req;
	struct db	db;

	if (db_init(&db, conf->db, TOKEN_PROGNAME, store_stmts) < 0) {
		log_error("out of memory");
		cgi_fail();
		return 1;
	}
	request_init(&req, &cgi_io, NULL);
	req.conf = conf;
	req.db = &db;
	handler_dispatch(&req);
	db_destroy(&db);
	return 0;
}

/* A 500 for a CGI process that could not load its configuration. */
void
cgi_fail(void)
{
	struct request	req;

	request_init(&req, &cgi_io, NULL);
	reply_internal(&req);
}
