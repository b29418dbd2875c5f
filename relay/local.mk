# relay/: parley-relay, the WebSocket daemon (included from the top-level
# Makefile.am).  One file per concern; relay/relay.h is the internal header.

RELAY_CFLAGS = $(AM_CFLAGS) $(LIBPQ_CFLAGS) $(JANSSON_CFLAGS) \
	$(LIBJWT_CFLAGS) $(LIBCRYPTO_CFLAGS)
RELAY_LIBS = relay/librelay.a $(PARLEY_COMMON_LIBS) $(CIVETWEB_LIBS)

# Everything but main.c is in librelay.a so the fuzz targets
# (tests/fuzz/fuzz_relay_*.c) link the same code.
noinst_LIBRARIES += relay/librelay.a
relay_librelay_a_SOURCES = \
	relay/relay.h \
	relay/rcfg.c \
	relay/server.c \
	relay/ws.c \
	relay/conn.c \
	relay/auth.c \
	relay/outq.c \
	relay/cmd.c \
	relay/post.c \
	relay/convo.c \
	relay/member.c \
	relay/presence.c \
	relay/dbpool.c \
	relay/listen.c \
	relay/deliver.c \
	relay/group.c \
	relay/timer.c \
	relay/metrics.c
relay_librelay_a_CFLAGS = $(RELAY_CFLAGS)

bin_PROGRAMS += relay/parley-relay
relay_parley_relay_SOURCES = relay/main.c
relay_parley_relay_CFLAGS = $(RELAY_CFLAGS)
relay_parley_relay_LDADD = $(RELAY_LIBS)

dist_man_MANS += relay/parley-relay.8
EXTRA_DIST += contrib/systemd/parley-relay.service
