# common/: the internal library both programs link (configuration, logging,
# keys and JWT checks, JSON input, database helpers, Origin checks).

noinst_LIBRARIES += common/libparley.a
common_libparley_a_SOURCES = \
	common/cfg.c common/cfg.h \
	common/db.c common/db.h \
	common/jsonutil.c common/jsonutil.h \
	common/jwtkey.c common/jwtkey.h \
	common/log.c common/log.h \
	common/origin.c common/origin.h \
	common/util.c common/util.h
common_libparley_a_CFLAGS = $(AM_CFLAGS) $(LIBPQ_CFLAGS) $(JANSSON_CFLAGS) \
	$(LIBJWT_CFLAGS) $(LIBCRYPTO_CFLAGS)

# Link line for programs and tests that use the library.
PARLEY_COMMON_LIBS = common/libparley.a $(LIBJWT_LIBS) $(LIBCRYPTO_LIBS) \
	$(JANSSON_LIBS) $(LIBPQ_LIBS) $(PTHREAD_LIBS)
