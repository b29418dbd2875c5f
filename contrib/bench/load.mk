# contrib/bench/load.mk: the WebSocket load generator and the raw broadcast
# ceiling server (benchmark tools: built with the project, never installed).
# Included from contrib/bench/local.mk.

noinst_PROGRAMS += contrib/bench/parley-load
contrib_bench_parley_load_SOURCES = \
	contrib/bench/load.h \
	contrib/bench/parley-load.c \
	contrib/bench/load_run.c \
	contrib/bench/load_conn.c \
	contrib/bench/load_auth.c \
	contrib/bench/load_json.c \
	contrib/bench/load_hist.c \
	contrib/bench/load_util.c
contrib_bench_parley_load_CFLAGS = $(AM_CFLAGS) $(LIBCRYPTO_CFLAGS)
contrib_bench_parley_load_LDADD = $(LIBCRYPTO_LIBS) $(PTHREAD_LIBS)

noinst_PROGRAMS += contrib/bench/raw-broadcast
contrib_bench_raw_broadcast_SOURCES = \
	contrib/bench/load.h \
	contrib/bench/raw-broadcast.c \
	contrib/bench/load_util.c
contrib_bench_raw_broadcast_CFLAGS = $(AM_CFLAGS) $(LIBCRYPTO_CFLAGS)
contrib_bench_raw_broadcast_LDADD = $(LIBCRYPTO_LIBS)

# Benchmark users, sessions and group, printed as parley-load's --sessions file.
EXTRA_DIST += contrib/bench/load_setup.sql
