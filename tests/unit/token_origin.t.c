/*
 * token_origin.t.c: the Origin check of the POST routes and of the relay's
 * handshake (common/origin.c): same-origin decisions against the request's
 * scheme and Host header, the allow-list, what PARLEY_ALLOWED_ORIGINS
 * refuses at startup, and parley-token's request scheme (request.c).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "token.h"

struct ocase {
	const char	*name;
	const char	*origin;
	const char	*host;
	const char	*scheme;	/* the request's (X-Forwarded-Proto ...) */
	int		 allowed;
};

/* With an empty allow-list: same origin (scheme, host, port) only. */
static const struct ocase same_host[] = {
	{ "no Origin header", NULL, "chat.example.org", "https", 1 },
	{ "no Origin, no Host", NULL, NULL, "http", 1 },
	{ "no Origin, no scheme", NULL, "chat.example.org", NULL, 1 },
	{ "same host https", "https://chat.example.org", "chat.example.org", "https", 1 },
	{ "same host and port", "http://localhost:8080", "localhost:8080", "http", 1 },
	{ "host differs in case", "https://Chat.Example.ORG", "chat.example.org", "https", 1 },
	{ "default port in Host", "https://chat.example.org", "chat.example.org:443", "https", 1 },
	{ "http default port in Host", "http://chat.example.org", "chat.example.org:80", "http", 1 },
	{ "https with Host :80 differs", "https://chat.example.org", "chat.example.org:80", "https", 0 },
	{ "other host", "https://evil.example", "chat.example.org", "https", 0 },
	{ "suffix attack", "https://chat.example.org.evil.example", "chat.example.org", "https", 0 },
	{ "prefix attack", "https://evilchat.example.org", "chat.example.org", "https", 0 },
	{ "other port", "http://localhost:8081", "localhost:8080", "http", 0 },
	{ "port missing in Origin", "http://localhost", "localhost:8080", "http", 0 },
	{ "null origin", "null", "chat.example.org", "https", 0 },
	{ "Origin with a path", "https://chat.example.org/x", "chat.example.org", "https", 0 },
	{ "Origin with a trailing slash", "https://chat.example.org/", "chat.example.org", "https", 0 },
	{ "Origin with two trailing slashes", "http://localhost:8080//", "localhost:8080", "http", 0 },
	{ "Origin with userinfo", "https://a@chat.example.org", "chat.example.org", "https", 0 },
	{ "non-web scheme", "ftp://chat.example.org", "chat.example.org", "https", 0 },
	{ "no Host header", "https://chat.example.org", NULL, "https", 0 },
	{ "empty Origin", "", "chat.example.org", "https", 0 },
	{ "IPv6 literal", "http://[::1]:8080", "[::1]:8080", "http", 1 },
	{ "IPv6 other port", "http://[::1]:8081", "[::1]:8080", "http", 0 },
	/* The scheme is the request's, not the Origin's. */
	{ "https Origin, request over http", "https://chat.example.org", "chat.example.org", "http", 0 },
	{ "http Origin, request over https", "http://chat.example.org", "chat.example.org", "https", 0 },
	{ "https Origin with port, request over http", "https://localhost:8080", "localhost:8080", "http", 0 },
	{ "http Origin with port, request over https", "http://localhost:8443", "localhost:8443", "https", 0 },
	{ "https request, Host :443, Origin without port", "https://chat.example.org", "chat.example.org:443", "https", 1 },
	{ "http request, Host :443, https Origin", "https://chat.example.org", "chat.example.org:443", "http", 0 },
	{ "request scheme unknown (NULL)", "https://chat.example.org", "chat.example.org", NULL, 0 },
	{ "request scheme not a web scheme", "ftp://chat.example.org", "chat.example.org", "ftp", 0 },
	{ "request scheme in upper case is not canonical", "https://chat.example.org", "chat.example.org", "HTTPS", 0 },
};

/* With "https://app.example.org, http://localhost:3000". */
static const struct ocase listed[] = {
	{ "listed origin", "https://app.example.org", "chat.example.org", "https", 1 },
	{ "listed with port", "http://localhost:3000", "chat.example.org", "https", 1 },
	{ "listed, explicit default port", "https://app.example.org:443", "x", "https", 1 },
	{ "listed, other case", "HTTPS://APP.example.org", "x", "https", 1 },
	{ "listed, request over http (the list names the scheme)", "https://app.example.org", "x", "http", 1 },
	{ "listed, request scheme unknown", "https://app.example.org", "x", NULL, 1 },
	{ "same host is not implied by a list", "https://chat.example.org",
	  "chat.example.org", "https", 0 },
	{ "other scheme of a listed host", "http://app.example.org", "x", "http", 0 },
	{ "other port of a listed host", "http://localhost:3001", "x", "http", 0 },
	{ "listed with a trailing slash", "https://app.example.org/", "x", "https", 0 },
	{ "null with a list", "null", "x", "https", 0 },
	{ "no Origin with a list", NULL, "x", "https", 1 },
};

static void
test_same_host(void)
{
	struct origin_list	empty = { NULL, 0 };
	size_t			i;

	for (i = 0; i < sizeof(same_host) / sizeof(same_host[0]); i++)
		is_int(origin_allowed(&empty, same_host[i].origin,
		    same_host[i].host, same_host[i].scheme),
		    same_host[i].allowed, same_host[i].name);
	is_int(origin_allowed(NULL, "http://localhost:8080", "localhost:8080",
	    "http"), 1, "NULL list: same origin passes");
	is_int(origin_allowed(NULL, "https://localhost:8080", "localhost:8080",
	    "http"), 0, "NULL list: scheme compared");
}

static void
test_listed(void)
{
	struct origin_list	l;
	char			err[256];
	size_t			i;

	ok(origin_list_parse(" https://app.example.org ,http://localhost:3000",
	    &l, err, sizeof(err)) == 0 && l.n == 2, "list parses");
	for (i = 0; i < sizeof(listed) / sizeof(listed[0]); i++)
		is_int(origin_allowed(&l, listed[i].origin, listed[i].host,
		    listed[i].scheme), listed[i].allowed, listed[i].name);
	origin_list_free(&l);
}

/* parley-token's request scheme from the web server's variables. */
static void
test_request_scheme(void)
{
	static const struct {
		const char	*https, *scheme, *want;
	} c[] = {
		{ NULL, NULL, "http" },
		{ NULL, "http", "http" },
		{ NULL, "https", "https" },
		{ NULL, "HTTPS", "https" },
		{ "on", NULL, "https" },
		{ "on", "http", "https" },
		{ "1", NULL, "https" },
		{ "off", NULL, "http" },
		{ "OFF", "http", "http" },
		{ "", "http", "http" },
		{ NULL, "gopher", "http" },
	};
	char	name[96];
	size_t	i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		snprintf(name, sizeof(name),
		    "request_scheme(HTTPS=%s, REQUEST_SCHEME=%s)",
		    c[i].https ? c[i].https : "unset",
		    c[i].scheme ? c[i].scheme : "unset");
		is_str(request_scheme(c[i].https, c[i].scheme), c[i].want, name);
	}
}

static void
test_parse_errors(void)
{
	static const char *const bad[] = {
		"*", "null", "https://a.example/", "https://a.example/path",
		"a.example", "https://", "https://a.example,", ",https://a.example",
		"https://a.example:", "https://a.example:12x", "https://u@a.example",
	};
	struct origin_list	l = { NULL, 0 };
	char			err[256];
	size_t			i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ok(origin_list_parse(bad[i], &l, err, sizeof(err)) == -1 &&
		    err[0] != '\0', "refused: '%s' (%s)", bad[i], err);
	}
	ok(origin_list_parse("*", &l, err, sizeof(err)) == -1 &&
	    strstr(err, "'*'") != NULL, "'*' refusal names it");
	ok(origin_list_parse(NULL, &l, err, sizeof(err)) == 0 && l.n == 0,
	    "unset: empty list");
	ok(origin_list_parse("", &l, err, sizeof(err)) == 0 && l.n == 0,
	    "empty string: empty list");
}

static void
test_canon(void)
{
	char	out[300];

	ok(origin_canon("HTTPS://Example.COM:443", out, sizeof(out)) == 0 &&
	    strcmp(out, "https://example.com") == 0, "canon: case and :443");
	ok(origin_canon("http://example.com:8080", out, sizeof(out)) == 0 &&
	    strcmp(out, "http://example.com:8080") == 0, "canon: other port kept");
	ok(origin_canon("http://example.com:80", out, 10) == -1,
	    "canon: small buffer refused");
}

int
main(void)
{
	test_same_host();
	test_listed();
	test_request_scheme();
	test_parse_errors();
	test_canon();
	done_testing();
	return exit_status();
}
