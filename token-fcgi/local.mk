# token-fcgi/: parley-token, the login and token service (FastCGI or CGI).
# Everything but main.c is in libtoken.a so the unit tests link the same code.

TOKEN_CFLAGS = $(AM_CFLAGS) $(LIBPQ_CFLAGS) $(JANSSON_CFLAGS) \
	$(LIBJWT_CFLAGS) $(LIBCRYPTO_CFLAGS) $(FCGI_CFLAGS)
TOKEN_LIBS = token-fcgi/libtoken.a $(FCGI_LIBS) $(PARLEY_COMMON_LIBS)

noinst_LIBRARIES += token-fcgi/libtoken.a
token_fcgi_libtoken_a_SOURCES = \
	token-fcgi/token.h \
	token-fcgi/cgi.c \
	token-fcgi/conf.c \
	token-fcgi/cookie.c \
	token-fcgi/form.c \
	token-fcgi/handler.c \
	token-fcgi/jwks.c \
	token-fcgi/login.c \
	token-fcgi/reply.c \
	token-fcgi/request.c \
	token-fcgi/scache.c \
	token-fcgi/server.c \
	token-fcgi/session.c \
	token-fcgi/store.c \
	token-fcgi/token.c
token_fcgi_libtoken_a_CFLAGS = $(TOKEN_CFLAGS)

bin_PROGRAMS += token-fcgi/parley-token
token_fcgi_parley_token_SOURCES = token-fcgi/main.c
token_fcgi_parley_token_CFLAGS = $(TOKEN_CFLAGS)
token_fcgi_parley_token_LDADD = $(TOKEN_LIBS)

dist_man_MANS += token-fcgi/parley-token.8

# systemd units (socket activation); installed by packagers, not by make.
EXTRA_DIST += contrib/systemd/parley-token.service \
	contrib/systemd/parley-token.socket

# Unit tests of the token service (C, TAP; tests/unit/tap.h).
TOKEN_UNIT_TESTS = \
	tests/unit/token_cookie.t \
	tests/unit/token_form.t \
	tests/unit/token_origin.t \
	tests/unit/token_request.t \
	tests/unit/token_reply.t \
	tests/unit/token_conf.t \
	tests/unit/token_handler.t \
	tests/unit/token_scache.t \
	tests/unit/token_mint.t
check_PROGRAMS += $(TOKEN_UNIT_TESTS)
TESTS += $(TOKEN_UNIT_TESTS) \
	tests/unit/token_manpage.sh \
	tests/unit/token_startup.sh \
	tests/unit/token_modes.sh
EXTRA_DIST += tests/unit/token_manpage.sh tests/unit/token_startup.sh \
	tests/unit/token_modes.sh tests/unit/token_fcgi_client.py

tests_unit_token_cookie_t_SOURCES = tests/unit/token_cookie.t.c tests/unit/tap.h
tests_unit_token_cookie_t_CFLAGS = $(TOKEN_CFLAGS) -I$(top_srcdir)/token-fcgi
tests_unit_token_cookie_t_LDADD = $(TOKEN_LIBS)

tests_unit_token_form_t_SOURCES = tests/unit/token_form.t.c tests/unit/tap.h
tests_unit_token_form_t_CFLAGS = $(TOKEN_CFLAGS) -I$(top_srcdir)/token-fcgi
tests_unit_token_form_t_LDADD = $(TOKEN_LIBS)

tests_unit_token_origin_t_SOURCES = tests/unit/token_origin.t.c tests/unit/tap.h
tests_unit_token_origin_t_CFLAGS = $(TOKEN_CFLAGS) -I$(top_srcdir)/token-fcgi
tests_unit_token_origin_t_LDADD = $(TOKEN_LIBS)

tests_unit_token_request_t_SOURCES = tests/unit/token_request.t.c tests/unit/tap.h tests/unit/token_fake.h
tests_unit_token_request_t_CFLAGS = $(TOKEN_CFLAGS) -I$(top_srcdir)/token-fcgi
tests_unit_token_request_t_LDADD = $(TOKEN_LIBS)

tests_unit_token_reply_t_SOURCES = tests/unit/token_reply.t.c tests/unit/tap.h tests/unit/token_fake.h
tests_unit_token_reply_t_CFLAGS = $(TOKEN_CFLAGS) -I$(top_srcdir)/token-fcgi
tests_unit_token_reply_t_LDADD = $(TOKEN_LIBS)

tests_unit_token_conf_t_SOURCES = tests/unit/token_conf.t.c tests/unit/tap.h tests/unit/token_keys.h
tests_unit_token_conf_t_CFLAGS = $(TOKEN_CFLAGS) -I$(top_srcdir)/token-fcgi
tests_unit_token_conf_t_LDADD = $(TOKEN_LIBS)

tests_unit_token_handler_t_SOURCES = tests/unit/token_handler.t.c tests/unit/tap.h tests/unit/token_fake.h tests/unit/token_keys.h
tests_unit_token_handler_t_CFLAGS = $(TOKEN_CFLAGS) -I$(top_srcdir)/token-fcgi
tests_unit_token_handler_t_LDADD = $(TOKEN_LIBS)

tests_unit_token_scache_t_SOURCES = tests/unit/token_scache.t.c tests/unit/tap.h
tests_unit_token_scache_t_CFLAGS = $(TOKEN_CFLAGS) -I$(top_srcdir)/token-fcgi
tests_unit_token_scache_t_LDADD = $(TOKEN_LIBS)

tests_unit_token_mint_t_SOURCES = tests/unit/token_mint.t.c tests/unit/tap.h tests/unit/token_keys.h
tests_unit_token_mint_t_CFLAGS = $(TOKEN_CFLAGS) -I$(top_srcdir)/token-fcgi
tests_unit_token_mint_t_LDADD = $(TOKEN_LIBS)
