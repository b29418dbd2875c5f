/*
 * fuzz_request.c: libFuzzer target for whole parley-token requests through
 * the in-memory transport of the unit tests (tests/unit/token_fake.h):
 * request_init (the variables, the route from SCRIPT_NAME + PATH_INFO),
 * request_content_length, and handler_dispatch with the real routes, which
 * read the body under the cap, parse cookies and credentials and check the
 * Origin before they would call the database (here always down: 503).
 *
 * Input: "NAME=value" lines (at most 31) up to an empty line, then the
 * body (any bytes); "\n" ends a line, so values hold no newline, as with
 * CGI.  Each request runs twice, once with an Origin allow-list and once
 * with the same-host rule.  Oracles: one documented answer, never more
 * body read than CONTENT_LENGTH or the cap, a route without '/', and
 * neither the session cookie nor a password from the body echoed in the
 * answer.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_token.h"
#include "log.h"
#include "token_fake.h"

static struct conf	*fuzz_request_listed, *fuzz_request_samehost;
static struct db	 fuzz_request_db;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	log_init("fuzz_request", LOG_LEVEL_ERROR);
	fuzz_request_listed = fuzz_token_conf(
	    "https://chat.example.com, http://localhost:8080");
	fuzz_request_samehost = fuzz_token_conf(NULL);
	fuzz_token_db_down(&fuzz_request_db, "");
	log_level = LOG_LEVEL_ERROR;
	return 0;
}

/*
 * A password in a urlencoded or JSON body that cannot occur in an answer
 * by chance: 12 or more letters and digits, at least one a digit.
 */
static char *
fuzz_request_password(const char *body)
{
	static const char	 alnum[] = "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	const char		*p = strstr(body, "password=");
	size_t			 n;

	if (p != NULL)
		p += strlen("password=");
	else if ((p = strstr(body, "\"password\":\"")) != NULL)
		p += strlen("\"password\":\"");
	else
		return NULL;
	n = strspn(p, alnum);
	if (n < 12 || strcspn(p, "0123456789") >= n)
		return NULL;
	return fuzz_strndup(p, n);
}

static void
fuzz_request_run(struct conf *c, char *const *vars, size_t nvars,
    const char *body, size_t blen)
{
	struct fake	*f = fuzz_malloc(sizeof(*f));
	struct request	 req;
	const char	*cookie, *cl;
	char		*pw, value[COOKIE_MAX_VALUE + 1];
	size_t		 i, want = 0;

	memset(f, 0, sizeof(*f));
	for (i = 0; i < nvars; i++)
		f->vars[i] = vars[i];
	f->body = body;
	f->body_len = blen;
	f->chunk = blen % 7 + 1;	/* short reads, as from a socket */
	request_init(&req, &fake_io, f);
	req.conf = c;
	req.db = &fuzz_request_db;
	FUZZ_CHECK(req.method != NULL);
	FUZZ_CHECK(strlen(req.route) < REQUEST_ROUTE_MAX);
	FUZZ_CHECK(strchr(req.route, '/') == NULL);

	cl = request_param(&req, "CONTENT_LENGTH");
	if (request_content_length(cl, c->max_body, &want) == REQUEST_BODY_OK)
		FUZZ_CHECK(want <= c->max_body);
	else
		want = 0;

	handler_dispatch(&req);
	FUZZ_CHECK(fuzz_token_answer_ok(f->out, f->out_len, req.status));
	FUZZ_CHECK(f->body_pos <= want);

	/* Secrets the client sent are not sent back. */
	cookie = request_param(&req, "HTTP_COOKIE");
	if (cookie_find(cookie, c->cookie_name, value, sizeof(value)) ==
	    COOKIE_FOUND && strlen(value) == 43)
		FUZZ_CHECK(strstr(f->out, value) == NULL);
	if ((pw = fuzz_request_password(body)) != NULL) {
		FUZZ_CHECK(strstr(f->out, pw) == NULL);
		free(pw);
	}

	FUZZ_CHECK(request_drain(&req, 1 << 20) == 0);
	FUZZ_CHECK(f->body_pos == f->body_len);
	free(f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in	 in = { data, size };
	char		*vars[32], *line, *body;
	size_t		 nvars = 0, blen, i;

	while ((line = fuzz_field(&in, '\n')) != NULL) {
		if (*line == '\0' || nvars == 31) {
			free(line);
			break;
		}
		if (strchr(line, '=') == NULL) {
			free(line);
			continue;
		}
		vars[nvars++] = line;
	}
	vars[nvars] = NULL;
	blen = in.p ? in.n : 0;
	body = fuzz_strndup(in.p, blen);

	fuzz_request_run(fuzz_request_listed, vars, nvars, body, blen);
	fuzz_request_run(fuzz_request_samehost, vars, nvars, body, blen);

	for (i = 0; i < nvars; i++)
		free(vars[i]);
	free(body);
	return 0;
}
