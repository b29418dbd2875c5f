/*
 * fuzz_relay_cmd.c: libFuzzer target for relay/cmd.c and the command
 * handlers it dispatches to (post.c, convo.c, member.c, presence.c,
 * auth.c's refresh): strict JSON decoding and validation of client
 * commands (PROTOCOL §2) on an authenticated connection.
 *
 * Input: text messages separated by '\n', each handed to cmd_message as
 * ws.c hands over a complete text message (valid UTF-8, at most
 * PARLEY_MAX_FRAME bytes; others are skipped, as ws.c closes the
 * connection before cmd.c sees them).  All messages go to one connection,
 * so the rate limit, the command lane and a close midway are exercised.
 *
 * Nothing is replaced at link time: the real relay code from
 * relay/librelay.a runs, with the database pool stopped before it was ever
 * started (fuzz_relay.h), so each command that needs the database becomes
 * a job that the pool refuses and cmd.c drops and frees (LeakSanitizer
 * checks that).  Oracles (fuzz_relay_finish): every reply queued is a
 * well-formed server frame holding one JSON object with a "type", errors
 * carry a PROTOCOL §2 code, a close frame comes last with the connection's
 * close code, and no job or reference to the connection is left.
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
	struct fuzz_in	 in = { data, size };
	struct conn	*c;
	struct rcfg	*r;
	char		*msg;
	size_t		 len;
	int64_t		 max;

	r = rcfg_get();
	max = r->max_frame;
	rcfg_put(r);
	c = fuzz_relay_conn();
	while ((msg = fuzz_field(&in, '\n')) != NULL) {
		len = strlen(msg);	/* a NUL ends the message early */
		if (len <= (size_t)max && util_utf8_valid(msg, len)) {
			/* an exact-size copy, so ASan sees reads past it */
			char	*buf = fuzz_malloc(len);

			memcpy(buf, msg, len);
			cmd_message(c, buf, len);
			free(buf);
		}
		free(msg);
	}
	fuzz_relay_finish(c);
	return 0;
}
