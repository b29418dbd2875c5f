/*
 * fuzz_fcgi.c: libFuzzer target for the FastCGI path of parley-token: a
 * FastCGI record stream read by libfcgi and served by token-fcgi/server.c's
 * own worker code.
 *
 * The target plays the web server.  The input is a list of operations
 * (below) that it turns into records with correct framing: BEGIN_REQUEST
 * (role, keep-alive), PARAMS and STDIN content split at any points, the
 * empty records that end both streams, padding of any length, records of
 * another request id (which libfcgi must skip) and FCGI_GET_VALUES queries.
 * What is fuzzed is what a web server passes through from its client: the
 * name-value pairs (1- and 4-byte lengths, repeated Cookie and Origin
 * parameters, anything in the values), the body, and how both are cut into
 * records.  Each request's records go into one end of a socketpair, and
 * the other end becomes the worker's connection exactly as server_worker
 * hands an accepted socket to libfcgi (ipcFd set, listening socket -1); up
 * to 8 requests on it (keep-alive) go through FCGX_Accept_r, server_serve
 * (parameters, the request, the handlers, the drain) and FCGX_Finish_r.
 * Like nginx, it sends the next request only after the answer to the last
 * one: libfcgi drops bytes it has read ahead when a request ends.
 * server.c is compiled into this file to reach its static functions.  The
 * database is down (fuzz_token.h), so nothing leaves the process.
 *
 * Why not raw bytes: libfcgi 2.4.2 has known defects that any peer on the
 * socket can trigger (docs/fuzzing.md: an abort on parameter lengths near
 * 2^31, a stack overflow on FCGI_GET_VALUES, a leak per management record),
 * and its reaction to broken framing (a bad version or a record of the
 * wrong type is read as the end of the stream, and the content that
 * follows as record headers) lets arbitrary bytes reach all three.  They
 * cannot be excluded precisely from a raw stream without reimplementing
 * libfcgi; only the web server can reach the socket (mode 0660), and it
 * sends well-framed records.  So the framing is ours, and the one known
 * defect reachable through well-framed content is skipped exactly: a
 * parameter declared longer than any input (64 KiB), whose only effect is
 * a malloc of the declared size and a failed read (near INT_MAX, the
 * CVE-2025-23016 abort; below it, a costly no-op under ASan).
 *
 * PARLEY_FUZZ_FCGI_RAW=1 writes inputs to the socket as they are instead,
 * unchecked: tests/fuzz/libfcgi-known/ holds one input per libfcgi defect
 * to reproduce them (they crash or leak; a fixed libfcgi must not).
 *
 * Operations: one byte OP, then for content ops a length byte (255: two
 * more bytes, big-endian) and that many bytes.  OP & 7:
 *	0 BEGIN_REQUEST; OP & 8: keep the connection; (OP >> 4) & 3: role
 *	  responder, authorizer, filter, or 9 (unknown: libfcgi closes)
 *	1 PARAMS content		2 end of PARAMS
 *	3 STDIN content			4 end of STDIN (the request is complete)
 *	5 content for request id 2 (PARAMS, or STDIN if OP & 8), not empty
 *	6 FCGI_GET_VALUES naming up to three known variables (bits of OP),
 *	  at most 16 per request
 *	7 padding for the records with content that follow: the next byte
 * Records out of order are put in order (STDIN after PARAMS ends; a new
 * BEGIN_REQUEST after the last request's STDIN ends).
 */
#include "../../token-fcgi/server.c"

#include <stdint.h>

#include "fuzz.h"
#include "fuzz_token.h"

#define FUZZ_FCGI_MAX_INPUT	65536	/* per request written at once */
#define FUZZ_FCGI_MAX_REQUESTS	8
#define FUZZ_FCGI_MAX_QUERIES	16	/* FCGI_GET_VALUES per request */
#define FUZZ_FCGI_ID		1

/* FastCGI record types (FastCGI 1.0 §8). */
enum fuzz_fcgi_type {
	FUZZ_FCGI_BEGIN_REQUEST = 1,
	FUZZ_FCGI_PARAMS = 4,
	FUZZ_FCGI_STDIN = 5,
	FUZZ_FCGI_GET_VALUES = 9
};

/* The records of one request, and where it stands. */
struct fuzz_fcgi_req {
	uint8_t	 buf[FUZZ_FCGI_MAX_INPUT];
	size_t	 len;
	uint8_t	 params[FUZZ_FCGI_MAX_INPUT];	/* its PARAMS stream */
	size_t	 plen;
	int	 complete;	/* STDIN ended */
	int	 queries;	/* FCGI_GET_VALUES records */
};

enum fuzz_fcgi_phase { FUZZ_PH_NONE, FUZZ_PH_PARAMS, FUZZ_PH_STDIN };

struct fuzz_fcgi_build {
	struct fuzz_fcgi_req	*reqs;
	int			 n;
	enum fuzz_fcgi_phase	 phase;
	unsigned		 pad;
};

static struct worker		 fuzz_fcgi_w;
static struct fuzz_fcgi_req	 fuzz_fcgi_reqs[FUZZ_FCGI_MAX_REQUESTS];
static int			 fuzz_fcgi_raw;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct conf	*c;

	(void)argc, (void)argv;
	log_init("fuzz_fcgi", LOG_LEVEL_ERROR);
	signal(SIGPIPE, SIG_IGN);
	c = fuzz_token_conf("https://chat.example.com");
	conf_publish(c);
	if (FCGX_Init() != 0)
		abort();
	/* The same conninfo as the snapshot, so server_serve keeps it. */
	fuzz_token_db_down(&fuzz_fcgi_w.db, c->db);
	fuzz_fcgi_w.id = 1;
	fuzz_fcgi_raw = getenv("PARLEY_FUZZ_FCGI_RAW") != NULL;
	return 0;
}

/*
 * The request that records go to now: the last one until its STDIN has
 * ended, then a new one (so nothing follows a complete request in the same
 * write).  NULL when no more fit.
 */
static struct fuzz_fcgi_req *
fuzz_fcgi_slot(struct fuzz_fcgi_build *b)
{
	struct fuzz_fcgi_req	*r;

	if (b->n > 0 && !b->reqs[b->n - 1].complete)
		return &b->reqs[b->n - 1];
	if (b->n == FUZZ_FCGI_MAX_REQUESTS)
		return NULL;
	r = &b->reqs[b->n++];
	r->len = r->plen = 0;
	r->complete = r->queries = 0;
	return r;
}

/* Append one record to the current request; dropped when it is full. */
static void
fuzz_fcgi_record(struct fuzz_fcgi_build *b, int type, int id,
    const uint8_t *content, size_t clen)
{
	struct fuzz_fcgi_req	*r = fuzz_fcgi_slot(b);
	uint8_t			 h[8];
	/*
	 * libfcgi skips no padding after BEGIN_REQUEST or after the empty
	 * records that end a stream (it reads it as the next header), so only
	 * records with content are padded, as web servers do.
	 */
	size_t			 pad = clen > 0 && type != FUZZ_FCGI_BEGIN_REQUEST ?
				    b->pad : 0;
	size_t			 need = 8 + clen + pad;

	/* Room is kept for the two records that end the streams. */
	if (clen > 0 || id != FUZZ_FCGI_ID || (type != FUZZ_FCGI_PARAMS &&
	    type != FUZZ_FCGI_STDIN))
		need += 2 * (8 + 255);
	if (r == NULL || need > sizeof(r->buf) - r->len)
		return;
	h[0] = 1;
	h[1] = (uint8_t)type;
	h[2] = (uint8_t)(id >> 8);
	h[3] = (uint8_t)id;
	h[4] = (uint8_t)(clen >> 8);
	h[5] = (uint8_t)clen;
	h[6] = (uint8_t)pad;
	h[7] = 0;
	memcpy(r->buf + r->len, h, 8);
	if (clen > 0)
		memcpy(r->buf + r->len + 8, content, clen);
	memset(r->buf + r->len + 8 + clen, 0, pad);
	r->len += 8 + clen + pad;
	if (type == FUZZ_FCGI_PARAMS && id == FUZZ_FCGI_ID && clen > 0) {
		memcpy(r->params + r->plen, content, clen);
		r->plen += clen;
	}
}

/* Begin a request (0 when no more fit). */
static int
fuzz_fcgi_begin(struct fuzz_fcgi_build *b, int keep, int role)
{
	static const int	 roles[] = { 1, 2, 3, 9 };
	uint8_t			 body[8] = { 0 };

	if (fuzz_fcgi_slot(b) == NULL)
		return 0;
	body[1] = (uint8_t)roles[role & 3];
	body[2] = keep ? 1 : 0;		/* FCGI_KEEP_CONN */
	fuzz_fcgi_record(b, FUZZ_FCGI_BEGIN_REQUEST, FUZZ_FCGI_ID, body, 8);
	b->phase = FUZZ_PH_PARAMS;
	return 1;
}

/* Bring the current request to `want`, ending streams on the way. */
static int
fuzz_fcgi_phase(struct fuzz_fcgi_build *b, enum fuzz_fcgi_phase want)
{
	if (b->phase == FUZZ_PH_NONE && !fuzz_fcgi_begin(b, 1, 0))
		return 0;
	if (b->phase == FUZZ_PH_PARAMS && want == FUZZ_PH_STDIN) {
		fuzz_fcgi_record(b, FUZZ_FCGI_PARAMS, FUZZ_FCGI_ID, NULL, 0);
		b->phase = FUZZ_PH_STDIN;
	}
	return b->phase == want;
}

/* The operations into requests; see the top of the file. */
static void
fuzz_fcgi_decode(const uint8_t *d, size_t n, struct fuzz_fcgi_build *b)
{
	static const char *const names[] = { "FCGI_MAX_CONNS",
	    "FCGI_MAX_REQS", "FCGI_MPXS_CONNS" };
	uint8_t		 q[64];
	size_t		 off = 0, len, qlen, k;
	unsigned	 op;

	while (off < n) {
		op = d[off++];
		len = 0;
		if ((op & 7) == 1 || (op & 7) == 3 || (op & 7) == 5) {
			len = off < n ? d[off++] : 0;
			if (len == 255 && n - off >= 2) {
				len = (size_t)d[off] << 8 | d[off + 1];
				off += 2;
			}
			if (len > n - off)
				len = n - off;
		}
		switch (op & 7) {
		case 0:
			if (b->phase != FUZZ_PH_NONE) {
				fuzz_fcgi_phase(b, FUZZ_PH_STDIN);
				fuzz_fcgi_record(b, FUZZ_FCGI_STDIN,
				    FUZZ_FCGI_ID, NULL, 0);
				b->reqs[b->n - 1].complete = 1;
				b->phase = FUZZ_PH_NONE;
			}
			if (!fuzz_fcgi_begin(b, op & 8, (int)(op >> 4)))
				return;
			break;
		case 1:
			if (b->phase == FUZZ_PH_STDIN ||
			    fuzz_fcgi_phase(b, FUZZ_PH_PARAMS))
				fuzz_fcgi_record(b, b->phase == FUZZ_PH_STDIN ?
				    FUZZ_FCGI_STDIN : FUZZ_FCGI_PARAMS,
				    FUZZ_FCGI_ID, d + off, len);
			break;
		case 2:
			fuzz_fcgi_phase(b, FUZZ_PH_STDIN);
			break;
		case 3:
			if (fuzz_fcgi_phase(b, FUZZ_PH_STDIN))
				fuzz_fcgi_record(b, FUZZ_FCGI_STDIN,
				    FUZZ_FCGI_ID, d + off, len);
			break;
		case 4:
			if (!fuzz_fcgi_phase(b, FUZZ_PH_STDIN))
				return;
			fuzz_fcgi_record(b, FUZZ_FCGI_STDIN, FUZZ_FCGI_ID,
			    NULL, 0);
			b->reqs[b->n - 1].complete = 1;
			b->phase = FUZZ_PH_NONE;
			break;
		case 5:
			/*
			 * Not empty: libfcgi skips an empty record of another
			 * request, then the content of the next record too.
			 */
			if (len > 0)
				fuzz_fcgi_record(b, op & 8 ? FUZZ_FCGI_STDIN :
				    FUZZ_FCGI_PARAMS, FUZZ_FCGI_ID + 1, d + off,
				    len);
			break;
		case 6:
			/*
			 * libfcgi answers each query at once, and this thread
			 * reads the answers only after the request: a few
			 * dozen would fill the socket and block it.
			 */
			if (fuzz_fcgi_slot(b) == NULL ||
			    b->reqs[b->n - 1].queries++ >= FUZZ_FCGI_MAX_QUERIES)
				break;
			for (qlen = 0, k = 0; k < 3; k++) {
				const char *nm = names[(op >> (3 + 2 * k)) % 3];

				if (((op >> 3) & 3) < k)
					break;
				q[qlen++] = (uint8_t)strlen(nm);
				q[qlen++] = 0;
				memcpy(q + qlen, nm, strlen(nm));
				qlen += strlen(nm);
			}
			fuzz_fcgi_record(b, FUZZ_FCGI_GET_VALUES, 0, q, qlen);
			break;
		case 7:
			b->pad = off < n ? d[off++] : 0;
			break;
		}
		off += len;
	}
}

/* A FastCGI length: one byte, or four with the high bit set.  0 or -1. */
static int
fuzz_fcgi_len(const uint8_t *p, size_t n, size_t *off, uint32_t *len)
{
	if (*off >= n)
		return -1;
	if ((p[*off] & 0x80) == 0) {
		*len = p[(*off)++];
		return 0;
	}
	if (n - *off < 4)
		return -1;
	*len = (uint32_t)(p[*off] & 0x7f) << 24 | (uint32_t)p[*off + 1] << 16 |
	    (uint32_t)p[*off + 2] << 8 | p[*off + 3];
	*off += 4;
	return 0;
}

/*
 * Does a PARAMS stream declare a pair longer than any input, as libfcgi's
 * ReadParams reads it pair by pair?  (See the top of the file.)
 */
static int
fuzz_fcgi_oversized(const uint8_t *p, size_t n)
{
	size_t		off = 0;
	uint32_t	nl, vl;

	while (off < n) {
		if (fuzz_fcgi_len(p, n, &off, &nl) < 0 ||
		    fuzz_fcgi_len(p, n, &off, &vl) < 0)
			return 0;
		if ((uint64_t)nl + vl > FUZZ_FCGI_MAX_INPUT)
			return 1;
		if ((uint64_t)nl + vl > n - off)
			return 0;
		off += nl + vl;
	}
	return 0;
}

/* Write all of (p, n) that the socket takes now (it is non-blocking). */
static void
fuzz_fcgi_send(int fd, const uint8_t *p, size_t n)
{
	ssize_t	r;

	while (n > 0 && (r = write(fd, p, n)) > 0) {
		p += r;
		n -= (size_t)r;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_fcgi_build	 b = { fuzz_fcgi_reqs, 0, FUZZ_PH_NONE, 0 };
	struct worker		*w = &fuzz_fcgi_w;
	struct timeval		 tv = { 2, 0 };
	char			 sink[4096];
	int			 sv[2], i, shut = 0;

	if (size > FUZZ_FCGI_MAX_INPUT)
		size = FUZZ_FCGI_MAX_INPUT;
	if (!fuzz_fcgi_raw) {
		fuzz_fcgi_decode(data, size, &b);
		for (i = 0; i < b.n; i++)
			if (fuzz_fcgi_oversized(b.reqs[i].params,
			    b.reqs[i].plen))
				return 0;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("fuzz: socketpair");
		abort();
	}
	(void)fcntl(sv[0], F_SETFL, O_NONBLOCK);
	/* A harness mistake becomes a slow input, not a hang. */
	(void)setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(sv[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

	/* The worker, as server_worker runs it. */
	FCGX_InitRequest(&w->fcgx, -1, 0);
	w->fcgx.ipcFd = sv[1];
	w->fcgx.keepConnection = 1;
	for (i = 0; i < (fuzz_fcgi_raw ? FUZZ_FCGI_MAX_REQUESTS : b.n); i++) {
		/* The next request only after the last answer; then EOF. */
		if (fuzz_fcgi_raw && i == 0)
			fuzz_fcgi_send(sv[0], data, size);
		else if (!fuzz_fcgi_raw)
			fuzz_fcgi_send(sv[0], b.reqs[i].buf, b.reqs[i].len);
		if (!shut && (fuzz_fcgi_raw || i == b.n - 1 ||
		    !b.reqs[i].complete)) {
			shutdown(sv[0], SHUT_WR);
			shut = 1;
		}
		/*
		 * "Detached": when libfcgi closes the connection it skips its
		 * lingering close (up to 2 s waiting for the peer's end of
		 * file, which this single thread would only send later).
		 */
		w->fcgx.detached = 1;
		if (FCGX_Accept_r(&w->fcgx) < 0)
			break;
		server_serve(w);
		w->fcgx.detached = 1;
		FCGX_Finish_r(&w->fcgx);
		/* Keep the answers from filling the socket buffer. */
		while (read(sv[0], sink, sizeof(sink)) > 0)
			;
		if (w->fcgx.ipcFd < 0)
			break;
	}
	if (w->fcgx.ipcFd >= 0) {
		close(w->fcgx.ipcFd);
		w->fcgx.ipcFd = -1;
	}
	FCGX_Free(&w->fcgx, 0);
	close(sv[0]);
	return 0;
}
