/*
 * ws.c: the RFC 6455 rules civetweb leaves to us, applied to each inbound
 * frame on the connection's own civetweb thread.
 *
 * civetweb hands over every frame separately (first byte and payload) and
 * checks none of: RSV bits, reserved opcodes, control-frame length and
 * fragmentation, continuation order, UTF-8 of text, or the close
 * handshake.  This file does, and enforces PARLEY_MAX_FRAME on whole
 * messages before anything parses them (1009).  Each frame of a message
 * must bring it closer to that limit or to its end: at most
 * WS_EMPTY_FRAGS_MAX empty fragments per message, so that empty
 * continuations (a wakeup each, never reaching the command rate limit)
 * cannot keep a message open forever; past it, 1009 too.  Binary messages
 * close with 1003: the protocol is JSON text.  Errors close the connection
 * with our close frame and keep reading until the peer answers (or the
 * grace period forces the socket shut, timer.c), so the peer learns the
 * code.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "relay.h"

#define WS_OP_CONT	0x0
#define WS_OP_TEXT	0x1
#define WS_OP_BINARY	0x2
#define WS_OP_CLOSE	0x8
#define WS_OP_PING	0x9
#define WS_OP_PONG	0xa

/*
 * Empty data frames without FIN one fragmented message may carry (RFC 6455
 * §5.4 allows them; Autobahn's 5.x and 6.1.x send a few).  Non-empty ones
 * are bounded by PARLEY_MAX_FRAME, since each adds a byte.  c->frag_on is
 * 1 + the count seen so far while a message is open.
 */
#define WS_EMPTY_FRAGS_MAX	16

/* Close codes a peer may send (RFC 6455 §7.4.1, §7.4.2). */
static int
ws_close_code_ok(int code)
{
	if (code >= 3000 && code <= 4999)
		return 1;
	switch (code) {
	case 1000: case 1001: case 1002: case 1003:
	case 1007: case 1008: case 1009: case 1010: case 1011:
		return 1;
	default:
		return 0;
	}
}

static void
ws_frag_reset(struct conn *c)
{
	free(c->frag);
	c->frag = NULL;
	c->fraglen = 0;
	c->fragcap = 0;
	c->frag_on = 0;
}

/* Fail the connection (RFC 6455 §7.1.7); keep reading for the answer. */
static int
ws_fail(struct conn *c, int code, const char *why)
{
	clog_warnx_rl(c, "websocket: %s", why);
	ws_frag_reset(c);
	conn_close(c, code, why);
	return 1;
}

static int
ws_on_close(struct conn *c, const unsigned char *p, size_t len)
{
	int	code = 1000;

	if (len == 1)
		return ws_fail(c, 1002, "close frame of one byte");
	if (len >= 2) {
		code = p[0] << 8 | p[1];
		if (!ws_close_code_ok(code))
			return ws_fail(c, 1002, "invalid close code");
		if (!util_utf8_valid(p + 2, len - 2))
			return ws_fail(c, 1007, "close reason not UTF-8");
	}
	/* §5.5.1: answer with a close frame (echoing the code), then close. */
	conn_close(c, code, "");
	return 0;
}

/* A complete text message. */
static int
ws_on_text(struct conn *c, const char *buf, size_t len)
{
	if (!util_utf8_valid(buf, len))
		return ws_fail(c, 1007, "text is not UTF-8");
	cmd_message(c, buf, len);
	return 1;
}

/* One frame from civetweb; see relay.h. */
int
ws_frame(struct conn *c, int bits, const char *data, size_t len)
{
	int			 fin = bits & 0x80, op = bits & 0x0f, st, fd;
	int64_t			 max;
	struct rcfg		*r;
	struct frame		*f;
	char			*nf;

	atomic_store_explicit(&c->last_rx_ms, util_mono_ms(),
	    memory_order_relaxed);
	pthread_mutex_lock(&c->mu);
	st = c->state;
	fd = c->fd;
	pthread_mutex_unlock(&c->mu);
	if (fd < 0)
		return 0;	/* we cannot write to it: let civetweb close */
	if (st >= CONN_CLOSING) {
		/* §5.5.1: after our close frame, only theirs matters. */
		return op == WS_OP_CLOSE ? 0 : 1;
	}
	if (bits & 0x70)
		return ws_fail(c, 1002, "reserved bits set");
	if (op >= 0x8) {
		/* §5.5: control frames are short and never fragmented. */
		if (!fin || len > 125)
			return ws_fail(c, 1002, "bad control frame");
		switch (op) {
		case WS_OP_CLOSE:
			return ws_on_close(c, (const unsigned char *)data, len);
		case WS_OP_PING:
			if ((f = outq_frame(WS_OP_PONG, data, len)) != NULL) {
				outq_send(c, f);
				outq_frame_unref(f);
			}
			return 1;
		case WS_OP_PONG:
			return 1;
		default:
			return ws_fail(c, 1002, "reserved opcode");
		}
	}
	if (op != WS_OP_CONT && op != WS_OP_TEXT && op != WS_OP_BINARY)
		return ws_fail(c, 1002, "reserved opcode");
	/* §5.4: a new data frame inside a fragmented message is a protocol
	 * error whatever its type, so this comes before the binary check. */
	if (op != WS_OP_CONT && c->frag_on)
		return ws_fail(c, 1002, "new message inside a fragmented one");
	if (op == WS_OP_BINARY)
		return ws_fail(c, 1003, "binary frames are not accepted");
	if (op == WS_OP_CONT && !c->frag_on)
		return ws_fail(c, 1002, "continuation without a message");

	r = rcfg_get();
	max = r->max_frame;
	rcfg_put(r);
	if ((uint64_t)len + c->fraglen > (uint64_t)max)
		return ws_fail(c, 1009, "message too large");

	if (op == WS_OP_TEXT && fin)
		return ws_on_text(c, data, len);

	/*
	 * §10.4: a limit on a message's frames as well as its bytes.  Empty
	 * fragments add nothing, so they are counted; a complete (FIN) frame
	 * ends the message and needs no count.
	 */
	if (c->frag_on == 0)
		c->frag_on = 1;		/* a fragmented message opens */
	if (len == 0 && !fin && ++c->frag_on > WS_EMPTY_FRAGS_MAX + 1)
		return ws_fail(c, 1009, "too many empty fragments");

	/* §5.4: fragments are joined before anything looks at them. */
	if (len > 0) {
		if (c->fraglen + len > c->fragcap) {
			/* Grow geometrically (capped at the limit) so many
			 * small fragments cost linear, not quadratic, copying. */
			size_t	 cap = c->fragcap ? c->fragcap : 256;

			while (cap < c->fraglen + len)
				cap *= 2;
			if ((uint64_t)cap > (uint64_t)max)
				cap = (size_t)max;
			if (cap < c->fraglen + len)
				cap = c->fraglen + len;
			if ((nf = realloc(c->frag, cap)) == NULL)
				return ws_fail(c, 1011, "out of memory");
			c->frag = nf;
			c->fragcap = cap;
		}
		memcpy(c->frag + c->fraglen, data, len);
		c->fraglen += len;
	}
	if (fin) {
		char	*buf = c->frag;
		size_t	 n = c->fraglen;
		int	 rc;

		c->frag = NULL;
		c->fraglen = 0;
		c->fragcap = 0;
		c->frag_on = 0;
		rc = ws_on_text(c, buf ? buf : "", n);
		free(buf);
		return rc;
	}
	return 1;
}
