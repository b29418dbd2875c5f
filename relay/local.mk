# relay/: parley-relay, the WebSocket daemon (included from the top-level
# Makefile.am).  One file per concern; relay/relay.h is the internal header.

bin_PROGRAMS += relay/parley-relay
relay_parley_relay_SOURCES = \
	relay/relay.h \
	relay/main.c \
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
relay_parley_relay_CFLAGS = $(AM_CFLAGS) $(LIBPQ_CFLAGS) $(JANSSON_CFLAGS) \
	$(LIBJWT_CFLAGS) $(LIBCRYPTO_CFLAGS)
relay_parley_relay_LDADD = $(PARLEY_COMMON_LIBS) $(CIVETWEB_LIBS)

dist_man_MANS += relay/parley-relay.8
EXTRA_DIST += contrib/systemd/parley-relay.service
