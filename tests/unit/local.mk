# tests/unit/: C unit tests of common/ (TAP, through tests/unit/tap.h).
# Each NAME.t.c is built as tests/unit/NAME.t and run by `make check`.

UNIT_TESTS = \
	tests/unit/cfg.t \
	tests/unit/db.t \
	tests/unit/jsonutil.t \
	tests/unit/jwtkey.t \
	tests/unit/log.t \
	tests/unit/util.t
check_PROGRAMS += $(UNIT_TESTS)
TESTS += $(UNIT_TESTS)

UNIT_CFLAGS = $(AM_CFLAGS) $(LIBPQ_CFLAGS) $(JANSSON_CFLAGS) \
	$(LIBJWT_CFLAGS) $(LIBCRYPTO_CFLAGS)

tests_unit_cfg_t_SOURCES = tests/unit/cfg.t.c tests/unit/tap.h
tests_unit_cfg_t_CFLAGS = $(UNIT_CFLAGS)
tests_unit_cfg_t_LDADD = $(PARLEY_COMMON_LIBS)

tests_unit_db_t_SOURCES = tests/unit/db.t.c tests/unit/tap.h
tests_unit_db_t_CFLAGS = $(UNIT_CFLAGS)
tests_unit_db_t_LDADD = $(PARLEY_COMMON_LIBS)

tests_unit_jsonutil_t_SOURCES = tests/unit/jsonutil.t.c tests/unit/tap.h
tests_unit_jsonutil_t_CFLAGS = $(UNIT_CFLAGS)
tests_unit_jsonutil_t_LDADD = $(PARLEY_COMMON_LIBS)

tests_unit_jwtkey_t_SOURCES = tests/unit/jwtkey.t.c tests/unit/tap.h
tests_unit_jwtkey_t_CFLAGS = $(UNIT_CFLAGS)
tests_unit_jwtkey_t_LDADD = $(PARLEY_COMMON_LIBS)

tests_unit_log_t_SOURCES = tests/unit/log.t.c tests/unit/tap.h
tests_unit_log_t_CFLAGS = $(UNIT_CFLAGS)
tests_unit_log_t_LDADD = $(PARLEY_COMMON_LIBS)

tests_unit_util_t_SOURCES = tests/unit/util.t.c tests/unit/tap.h
tests_unit_util_t_CFLAGS = $(UNIT_CFLAGS)
tests_unit_util_t_LDADD = $(PARLEY_COMMON_LIBS)
