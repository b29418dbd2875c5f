/*
 * fuzz_relay.h: what the relay's fuzz targets (fuzz_relay_frames.c,
 * fuzz_relay_cmd.c) share: relay state without a network, a database or
 * civetweb, one authenticated connection object per input, and an oracle
 * over everything the relay queued for that connection.  Header only;
 * each relay target includes it once, after fuzz.h.
 *
 * Setup uses the functions parley-relay's main.c uses: rcfg_init (from
 * the environment: the HS256 test key of fuzz.h in a temporary file, a
 * small PARLEY_MAX_FRAME, PARLEY_RATE 10/s (a burst of 20 commands) and
 * PARLEY_FLOOD_LIMIT 5, so that an input can reach the rate limit and the
 * 4029 close), conn_init, and dbpool_stop without dbpool_start: the pool
 * then refuses every job, and cmd.c drops it through its real drop path
 * (an `unavailable` error to the client, the job freed), so no database
 * and no thread is needed and nothing leaks.  No writer thread exists
 * either: outq_send only queues, and the harness reads the queue.
 */
#ifndef PARLEY_FUZZ_RELAY_H
#define PARLEY_FUZZ_RELAY_H

#include <jansson.h>

#include "relay.h"

#define FUZZ_RELAY_MAX_FRAME	"4096"	/* PARLEY_MAX_FRAME (>= 256) */
#define FUZZ_RELAY_UID		42
#define FUZZ_RELAY_FD		(1 << 20)	/* never a real descriptor */

/* Load settings as main.c does; abort when the relay will not start. */
static __attribute__((unused)) void
fuzz_relay_init(void)
{
	const char	*tmp = getenv("TMPDIR");
	char		 dir[4096], path[4200];
	char		*argv[] = { (char *)"parley-relay", NULL };
	FILE		*fp;
	int		 rc;

	log_init("fuzz_relay", LOG_LEVEL_ERROR);
	snprintf(dir, sizeof(dir), "%s/parley-fuzz.XXXXXX",
	    tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("fuzz: mkdtemp");
		abort();
	}
	snprintf(path, sizeof(path), "%s/key", dir);
	if ((fp = fopen(path, "w")) == NULL || fchmod(fileno(fp), 0600) < 0 ||
	    fputs(FUZZ_HS_SECRET, fp) < 0 || fclose(fp) != 0) {
		perror("fuzz: key file");
		abort();
	}
	setenv("PARLEY_JWT_ALG", "HS256", 1);
	setenv("PARLEY_JWT_KEY_FILE", path, 1);
	setenv("PARLEY_MAX_FRAME", FUZZ_RELAY_MAX_FRAME, 1);
	setenv("PARLEY_RATE", "10/s", 1);
	setenv("PARLEY_FLOOD_LIMIT", "5", 1);
	setenv("PARLEY_LOG_LEVEL", "error", 1);
	setenv("PARLEY_DB", "", 1);
	rc = rcfg_init(1, argv);
	unlink(path);
	rmdir(dir);
	if (rc != 0) {
		fprintf(stderr, "fuzz: rcfg_init failed (%d)\n", rc);
		abort();
	}
	if (conn_init() == -1) {
		fprintf(stderr, "fuzz: conn_init failed\n");
		abort();
	}
	dbpool_stop();		/* never started: every job is refused */
}

/* A connection as the handshake leaves it: authenticated, open. */
static __attribute__((unused)) struct conn *
fuzz_relay_conn(void)
{
	struct conn	*c;

	if ((c = conn_new("192.0.2.7", 40000)) == NULL) {
		fprintf(stderr, "fuzz: conn_new failed\n");
		abort();
	}
	c->uid = FUZZ_RELAY_UID;
	util_strlcpy(c->name, "alice", sizeof(c->name));
	util_strlcpy(c->sid, "fuzz-session", sizeof(c->sid));
	util_strlcpy(c->instance, "fuzz-tab", sizeof(c->instance));
	c->fd = FUZZ_RELAY_FD;
	c->state = CONN_OPEN;
	c->token_exp = util_now_ms() / 1000 + 300;
	return c;
}

/*
 * Check what the relay queued (server frames: FIN set, unmasked, length
 * as encoded; text is one JSON object with a string "type", and an error
 * has a known PROTOCOL §2 code; a close frame only once the connection
 * is closing, last, carrying its close code), then release the
 * connection: nothing else may still hold it.  With FUZZ_RELAY_DUMP set
 * in the environment, the replies are printed to stderr (for reading
 * what a seed reaches).
 */
static __attribute__((unused)) void
fuzz_relay_finish(struct conn *c)
{
	static const char *codes[] = { "bad_request", "unknown_type",
	    "forbidden", "not_found", "too_large", "rate_limited",
	    "unavailable", "internal", "invalid_token", NULL };
	uint32_t	 i;
	int		 closes = 0;

	for (i = 0; i < c->q.count; i++) {
		const struct frame	*f = c->q.ring[(c->q.head + i) % c->q.cap];
		const unsigned char	*h = f->data;
		size_t			 hl, len;

		FUZZ_CHECK(f->len >= 2);
		FUZZ_CHECK(h[0] == (0x80 | f->opcode));
		FUZZ_CHECK((h[1] & 0x80) == 0);
		if ((h[1] & 0x7f) < 126) {
			hl = 2;
			len = h[1];
		} else if ((h[1] & 0x7f) == 126) {
			FUZZ_CHECK(f->len >= 4);
			hl = 4;
			len = (size_t)h[2] << 8 | h[3];
		} else {
			FUZZ_CHECK(f->len >= 10);
			hl = 10;
			len = (size_t)h[6] << 24 | (size_t)h[7] << 16 |
			    (size_t)h[8] << 8 | h[9];
		}
		FUZZ_CHECK(hl + len == f->len);
		if (getenv("FUZZ_RELAY_DUMP") != NULL)
			fprintf(stderr, "fuzz_relay: op %d: %.*s\n", f->opcode,
			    f->opcode == 0x8 && len >= 2 ? (int)len - 2 : (int)len,
			    (const char *)h + hl + (f->opcode == 0x8 && len >= 2 ?
			    2 : 0));
		FUZZ_CHECK(closes == 0);	/* nothing after a close */
		switch (f->opcode) {
		case 0x1: {
			json_t		*j;
			json_error_t	 e;
			const char	*type, *code;
			int		 k, known = 0;

			j = json_loadb((const char *)h + hl, len, 0, &e);
			FUZZ_CHECK(j != NULL && json_is_object(j));
			type = json_string_value(json_object_get(j, "type"));
			FUZZ_CHECK(type != NULL);
			if (strcmp(type, "error") == 0) {
				code = json_string_value(json_object_get(j,
				    "code"));
				FUZZ_CHECK(code != NULL);
				for (k = 0; codes[k] != NULL; k++)
					known |= strcmp(codes[k], code) == 0;
				FUZZ_CHECK(known);
			}
			json_decref(j);
			break;
		}
		case 0x8:
			FUZZ_CHECK(c->state >= CONN_CLOSING);
			FUZZ_CHECK(len >= 2 && len <= 125);
			FUZZ_CHECK((h[hl] << 8 | h[hl + 1]) == c->close_code);
			closes++;
			break;
		case 0xa:
			FUZZ_CHECK(len <= 125);
			break;
		default:
			FUZZ_CHECK(!"unexpected opcode queued");
		}
	}
	FUZZ_CHECK(c->lane_head == NULL && c->lane_n == 0 && !c->lane_busy);
	FUZZ_CHECK(atomic_load(&c->refs) == 1);
	conn_unref(c);
}

#endif
