/*
 * fuzz_relay_frames.c: libFuzzer target for relay/ws.c, the RFC 6455 rules
 * civetweb leaves to Parley (RSV bits, reserved opcodes, control frames,
 * fragmentation and continuation order, the message size and empty
 * fragment limits, UTF-8 of text and close reasons, the close handshake),
 * on one authenticated connection; complete text messages go on to
 * cmd_message (fuzz_relay_cmd's territory too).
 *
 * Input: a sequence of frames as civetweb hands them to the data callback
 * (relay/server.c: server_ws_data -> ws_frame): each frame is one byte of
 * FIN/RSV/opcode bits, two bytes of payload length (big-endian; cut short
 * by the end of the input), then the payload (unmasked, as civetweb
 * unmasks it).  ws_frame's return value is honoured as civetweb does: 0
 * closes the socket, so no later frame is delivered.
 *
 * Nothing is replaced at link time: the real relay code from
 * relay/librelay.a runs with no writer threads (outq_send only queues)
 * and the database pool stopped before it was ever started, so jobs are
 * refused and freed by cmd.c's drop path (fuzz_relay.h).  Oracles: a ping
 * is answered by a pong with the same payload while the connection is
 * open; a fragmented message in progress never exceeds PARLEY_MAX_FRAME;
 * and fuzz_relay_finish checks the queued frames and that nothing still
 * holds the connection.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_relay.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_relay_init();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conn	*c;
	struct rcfg	*r;
	size_t		 off = 0, len;
	int64_t		 max;
	int		 bits, rc = 1, open;
	uint32_t	 before;

	r = rcfg_get();
	max = r->max_frame;
	rcfg_put(r);
	c = fuzz_relay_conn();
	while (rc != 0 && off < size) {
		char	*buf;

		bits = data[off++];
		len = 0;
		if (off < size)
			len = (size_t)data[off++] << 8;
		if (off < size)
			len |= data[off++];
		if (len > size - off)
			len = size - off;
		/* an exact-size copy, so ASan sees reads past the payload */
		buf = fuzz_malloc(len);
		if (len > 0)
			memcpy(buf, data + off, len);
		off += len;
		open = c->state == CONN_OPEN;
		before = c->q.count;
		rc = ws_frame(c, bits, buf, len);
		if (open && bits == (0x80 | 0x9) && len <= 125 &&
		    c->state == CONN_OPEN) {
			/* §5.5.2: answered with a pong of the same payload
			 * (unless queueing it closed the connection, 4030) */
			const struct frame	*f;

			FUZZ_CHECK(c->q.count == before + 1);
			f = c->q.ring[(c->q.head + before) % c->q.cap];
			FUZZ_CHECK(f->opcode == 0xa && f->len == 2 + len);
			FUZZ_CHECK(len == 0 ||
			    memcmp(f->data + 2, buf, len) == 0);
		}
		free(buf);
		FUZZ_CHECK(c->fraglen <= (size_t)max);
		FUZZ_CHECK(c->fraglen <= c->fragcap);
	}
	fuzz_relay_finish(c);
	return 0;
}
