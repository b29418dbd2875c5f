/*
 * token_fake.h: an in-memory transport for the token service's unit tests.
 *
 * A fake request is a list of "NAME=value" variables and a body; the answer
 * lands in a buffer.  It counts the body bytes read, so a test can check
 * that an oversized body was refused without being read.  Header only.
 */
#ifndef PARLEY_TOKEN_FAKE_H
#define PARLEY_TOKEN_FAKE_H

#include <stdlib.h>
#include <string.h>

#include "token.h"

struct fake {
	const char	*vars[32];	/* "NAME=value", NULL-terminated */
	const char	*body;
	size_t		 body_len;
	size_t		 body_pos;
	size_t		 chunk;		/* max bytes per read; 0 = any */
	int		 read_fails;	/* read returns -1 at the end */
	char		 out[16384];
	size_t		 out_len;
};

static __attribute__((unused)) const char *
fake_param(void *ctx, const char *name)
{
	struct fake	*f = ctx;
	size_t		 n = strlen(name), i;

	for (i = 0; f->vars[i] != NULL; i++)
		if (strncmp(f->vars[i], name, n) == 0 && f->vars[i][n] == '=')
			return f->vars[i] + n + 1;
	return NULL;
}

static __attribute__((unused)) ssize_t
fake_read(void *ctx, void *buf, size_t n)
{
	struct fake	*f = ctx;
	size_t		 left = f->body_len - f->body_pos;

	if (left == 0)
		return f->read_fails ? -1 : 0;
	if (n > left)
		n = left;
	if (f->chunk != 0 && n > f->chunk)
		n = f->chunk;
	memcpy(buf, f->body + f->body_pos, n);
	f->body_pos += n;
	return (ssize_t)n;
}

static __attribute__((unused)) int
fake_write(void *ctx, const void *buf, size_t n)
{
	struct fake	*f = ctx;

	if (f->out_len + n >= sizeof(f->out))
		return -1;
	memcpy(f->out + f->out_len, buf, n);
	f->out_len += n;
	f->out[f->out_len] = '\0';
	return 0;
}

static __attribute__((unused)) const struct request_io fake_io = { fake_param, fake_read, fake_write };

/* The body of the captured answer (after the blank line), or "". */
static __attribute__((unused)) const char *
fake_body(const struct fake *f)
{
	const char	*p = strstr(f->out, "\r\n\r\n");

	return p ? p + 4 : "";
}

/* Does the captured answer have this exact header line? */
static __attribute__((unused)) int
fake_has_header(const struct fake *f, const char *line)
{
	char		 want[512];
	const char	*end = strstr(f->out, "\r\n\r\n");
	const char	*p;

	snprintf(want, sizeof(want), "%s\r\n", line);
	p = strstr(f->out, want);
	return p != NULL && end != NULL && p < end + 2 &&
	    (p == f->out || p[-1] == '\n');
}

#endif
