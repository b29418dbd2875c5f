# tests/fuzz/: libFuzzer targets for every parser that takes client bytes
# (docs/fuzzing.md).  Configured with --enable-fuzzing (CC=clang), each
# target links libFuzzer and `make fuzz FUZZ_SECONDS=60` fuzzes them all;
# otherwise each links tests/fuzz/standalone.c, a main() that replays the
# seed corpora, and `make check` runs that replay (tests/fuzz/corpus.sh).
# `make fuzz-short` builds a clang tree of its own and fuzzes each target
# for a few seconds (tests/fuzz/short-run.sh).
#
# A new target NAME: tests/fuzz/fuzz_NAME.c, seeds in tests/fuzz/corpus/NAME/
# (and tests/fuzz/NAME.dict if useful, listed in EXTRA_DIST), its name in
# FUZZ_PROGS and a block of four lines below (copy one); corpus.sh,
# `make fuzz` and fuzz-short find the rest.

if FUZZING
FUZZ_DRIVER =
FUZZ_LINK = $(FUZZ_LDFLAGS)
FUZZ_IN_TREE = yes
else
FUZZ_DRIVER = tests/fuzz/standalone.c
FUZZ_LINK =
FUZZ_IN_TREE = no
endif

FUZZ_CFLAGS = $(AM_CFLAGS) $(LIBPQ_CFLAGS) $(JANSSON_CFLAGS) \
	$(LIBJWT_CFLAGS) $(LIBCRYPTO_CFLAGS) $(FCGI_CFLAGS) \
	-I$(top_srcdir)/tests/fuzz -I$(top_srcdir)/token-fcgi \
	-I$(top_srcdir)/tests/unit
FUZZ_LDFLAGS_ALL = $(AM_LDFLAGS) $(FUZZ_LINK)
FUZZ_SOURCES = $(FUZZ_DRIVER) tests/fuzz/fuzz.h tests/fuzz/fuzz_jwt_oracle.h \
	tests/fuzz/fuzz_token.h

FUZZ_PROGS = \
	tests/fuzz/fuzz_util \
	tests/fuzz/fuzz_jsonutil \
	tests/fuzz/fuzz_jwtkey_verify \
	tests/fuzz/fuzz_jwtkey_claims \
	tests/fuzz/fuzz_cfg \
	tests/fuzz/fuzz_cookie \
	tests/fuzz/fuzz_form \
	tests/fuzz/fuzz_origin \
	tests/fuzz/fuzz_request \
	tests/fuzz/fuzz_fcgi \
	tests/fuzz/fuzz_relay_frames \
	tests/fuzz/fuzz_relay_cmd
check_PROGRAMS += $(FUZZ_PROGS)

# common/
tests_fuzz_fuzz_util_SOURCES = tests/fuzz/fuzz_util.c $(FUZZ_SOURCES)
tests_fuzz_fuzz_util_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_util_LDADD = $(PARLEY_COMMON_LIBS)
tests_fuzz_fuzz_util_LDFLAGS = $(FUZZ_LDFLAGS_ALL)

tests_fuzz_fuzz_jsonutil_SOURCES = tests/fuzz/fuzz_jsonutil.c $(FUZZ_SOURCES)
tests_fuzz_fuzz_jsonutil_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_jsonutil_LDADD = $(PARLEY_COMMON_LIBS)
tests_fuzz_fuzz_jsonutil_LDFLAGS = $(FUZZ_LDFLAGS_ALL)

tests_fuzz_fuzz_jwtkey_verify_SOURCES = tests/fuzz/fuzz_jwtkey_verify.c $(FUZZ_SOURCES)
tests_fuzz_fuzz_jwtkey_verify_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_jwtkey_verify_LDADD = $(PARLEY_COMMON_LIBS)
tests_fuzz_fuzz_jwtkey_verify_LDFLAGS = $(FUZZ_LDFLAGS_ALL)

tests_fuzz_fuzz_jwtkey_claims_SOURCES = tests/fuzz/fuzz_jwtkey_claims.c $(FUZZ_SOURCES)
tests_fuzz_fuzz_jwtkey_claims_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_jwtkey_claims_LDADD = $(PARLEY_COMMON_LIBS)
tests_fuzz_fuzz_jwtkey_claims_LDFLAGS = $(FUZZ_LDFLAGS_ALL)

# common/cfg.c with parley-token's table, and token-fcgi/
tests_fuzz_fuzz_cfg_SOURCES = tests/fuzz/fuzz_cfg.c $(FUZZ_SOURCES)
tests_fuzz_fuzz_cfg_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_cfg_LDADD = $(TOKEN_LIBS)
tests_fuzz_fuzz_cfg_LDFLAGS = $(FUZZ_LDFLAGS_ALL)

tests_fuzz_fuzz_cookie_SOURCES = tests/fuzz/fuzz_cookie.c $(FUZZ_SOURCES)
tests_fuzz_fuzz_cookie_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_cookie_LDADD = $(TOKEN_LIBS)
tests_fuzz_fuzz_cookie_LDFLAGS = $(FUZZ_LDFLAGS_ALL)

tests_fuzz_fuzz_form_SOURCES = tests/fuzz/fuzz_form.c $(FUZZ_SOURCES)
tests_fuzz_fuzz_form_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_form_LDADD = $(TOKEN_LIBS)
tests_fuzz_fuzz_form_LDFLAGS = $(FUZZ_LDFLAGS_ALL)

tests_fuzz_fuzz_origin_SOURCES = tests/fuzz/fuzz_origin.c $(FUZZ_SOURCES)
tests_fuzz_fuzz_origin_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_origin_LDADD = $(TOKEN_LIBS)
tests_fuzz_fuzz_origin_LDFLAGS = $(FUZZ_LDFLAGS_ALL)

tests_fuzz_fuzz_request_SOURCES = tests/fuzz/fuzz_request.c $(FUZZ_SOURCES) \
	tests/unit/token_fake.h
tests_fuzz_fuzz_request_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_request_LDADD = $(TOKEN_LIBS)
tests_fuzz_fuzz_request_LDFLAGS = $(FUZZ_LDFLAGS_ALL)

# fuzz_fcgi.c compiles token-fcgi/server.c in (its transport is static).
tests_fuzz_fuzz_fcgi_SOURCES = tests/fuzz/fuzz_fcgi.c $(FUZZ_SOURCES)
tests_fuzz_fuzz_fcgi_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_fcgi_LDADD = $(TOKEN_LIBS)
tests_fuzz_fuzz_fcgi_LDFLAGS = $(FUZZ_LDFLAGS_ALL)

# relay/ (librelay.a: everything but relay/main.c)
tests_fuzz_fuzz_relay_frames_SOURCES = tests/fuzz/fuzz_relay_frames.c \
	$(FUZZ_SOURCES) tests/fuzz/fuzz_relay.h
tests_fuzz_fuzz_relay_frames_CFLAGS = $(FUZZ_CFLAGS) -I$(top_srcdir)/relay
tests_fuzz_fuzz_relay_frames_LDADD = $(RELAY_LIBS)
tests_fuzz_fuzz_relay_frames_LDFLAGS = $(FUZZ_LDFLAGS_ALL)

tests_fuzz_fuzz_relay_cmd_SOURCES = tests/fuzz/fuzz_relay_cmd.c \
	$(FUZZ_SOURCES) tests/fuzz/fuzz_relay.h
tests_fuzz_fuzz_relay_cmd_CFLAGS = $(FUZZ_CFLAGS) -I$(top_srcdir)/relay
tests_fuzz_fuzz_relay_cmd_LDADD = $(RELAY_LIBS)
tests_fuzz_fuzz_relay_cmd_LDFLAGS = $(FUZZ_LDFLAGS_ALL)

# Every target over its seed corpus, in every build (TAP, one line each).
TESTS += tests/fuzz/corpus.sh
# A bounded real fuzzing run needs clang and about a minute, so plain
# `make check` leaves it out; contrib/dev/test (and CI) run it after the
# suite with: make check TESTS=tests/fuzz/short-run.sh

EXTRA_DIST += docs/fuzzing.md \
	tests/fuzz/corpus.sh tests/fuzz/short-run.sh tests/fuzz/run.sh \
	tests/fuzz/mkcorpus.mjs tests/fuzz/corpus tests/fuzz/libfcgi-known \
	tests/fuzz/util.dict tests/fuzz/jsonutil.dict \
	tests/fuzz/jwtkey_verify.dict tests/fuzz/jwtkey_claims.dict \
	tests/fuzz/cfg.dict tests/fuzz/cookie.dict tests/fuzz/form.dict \
	tests/fuzz/origin.dict tests/fuzz/request.dict tests/fuzz/fcgi.dict \
	tests/fuzz/relay_frames.dict tests/fuzz/relay_cmd.dict

# make fuzz [FUZZ_SECONDS=60] [FUZZ_JOBS=1] [FUZZ_TARGETS="util cfg"]: fuzz
# each target for FUZZ_SECONDS; output and new corpus entries go to
# tests/fuzz/out/NAME/ in the build tree, never into the sources.
FUZZ_SECONDS = 60
FUZZ_JOBS = 1
FUZZ_TARGETS =

if FUZZING
fuzz: $(FUZZ_PROGS)
	@targets='$(FUZZ_TARGETS)'; test -n "$$targets" || targets='$(FUZZ_PROGS)'; \
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
	FUZZ_SECONDS='$(FUZZ_SECONDS)' FUZZ_JOBS='$(FUZZ_JOBS)' \
	$(SHELL) $(top_srcdir)/tests/fuzz/run.sh $$targets
else
fuzz:
	@echo "make fuzz: configure with CC=clang --enable-fuzzing" \
	    "(or run make fuzz-short)" >&2; exit 1
endif

fuzz-programs: $(FUZZ_PROGS)

# The short run: its own clang tree (tests/fuzz/clang-build), or this one
# when it is already a fuzzing build.
FUZZ_SHORT_SECONDS = 10
fuzz-short:
	@top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
	FUZZ_SHORT_SECONDS='$(FUZZ_SHORT_SECONDS)' FUZZ_JOBS='$(FUZZ_JOBS)' \
	FUZZ_IN_TREE='$(FUZZ_IN_TREE)' \
	$(SHELL) $(top_srcdir)/tests/fuzz/short-run.sh

clean-local: clean-local-fuzz
clean-local-fuzz:
	-rm -rf tests/fuzz/out tests/fuzz/clang-build
.PHONY: fuzz-programs fuzz-short clean-local-fuzz
