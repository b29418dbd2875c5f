# contrib/bench/: benchmark tools (built with the project, not installed).
noinst_PROGRAMS += contrib/bench/noop-fcgi
contrib_bench_noop_fcgi_SOURCES = contrib/bench/noop-fcgi.c
contrib_bench_noop_fcgi_CFLAGS = $(AM_CFLAGS) $(FCGI_CFLAGS)
contrib_bench_noop_fcgi_LDADD = $(FCGI_LIBS) $(PTHREAD_LIBS)
EXTRA_DIST += contrib/bench/token-bench
# The relay and database benchmarks (scripts; docs/benchmarks.md, docs/scaling.md).
EXTRA_DIST += contrib/bench/relay-bench contrib/bench/store-notify-bench \
	contrib/bench/notify-lag.c
EXTRA_DIST += docs/benchmarks.md docs/scaling.md docs/protocol-notes.md
include $(srcdir)/contrib/bench/load.mk
