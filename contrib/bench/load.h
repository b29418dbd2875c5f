/*
 * load.h: the internal header of parley-load, the epoll WebSocket load
 * generator (contrib/bench/parley-load.c), and of the helpers it shares with
 * raw-broadcast.c.  One section per file.  Nothing here is part of Parley
 * itself: these programs are benchmark tools, built but never installed.
 */
#ifndef PARLEY_LOAD_H
#define PARLEY_LOAD_H

#include <sys/socket.h>
#include <netinet/in.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define LOAD_BODY_LEN		64	/* BENCHMARKS.md rule 1 */
#define LOAD_MAX_SRC		64	/* --src addresses */
#define LOAD_MAX_THREADS	16
#define LOAD_MAX_FRAME		(16u << 20)	/* a larger frame is an error */
#define LOAD_MAX_DURATION	3600.0	/* seconds: the hard cap of a phase */
#define LOAD_NCODES		24	/* distinct close/error/HTTP codes kept */

/* ---- load_util.c: time, encodings, addresses ---------------------------- */

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t	load_now_ns(void);

/*
 * Standard base64 (with padding) of n bytes into out (NUL-terminated).
 * Returns the length, or -1 when outlen is too small.
 */
int	load_b64(const unsigned char *in, size_t n, char *out, size_t outlen);

/* base64url without padding, likewise (RFC 7515 §2). */
int	load_b64url(const unsigned char *in, size_t n, char *out, size_t outlen);

/*
 * Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2): base64 of
 * SHA-1(key || GUID), 28 characters, into out[29].  Returns 0 or -1.
 */
int	load_ws_accept(const char *key, size_t keylen, char out[29]);

/*
 * Parse "HOST:PORT", "[V6]:PORT" or "HOST" (port 0) where HOST is a numeric
 * address or "localhost", and refuse any address outside 127.0.0.0/8 and
 * ::1.  Fills ss and len.  Returns 0, or -1 with err set to a one-line reason.
 */
int	load_parse_addr(const char *s, int default_port,
	    struct sockaddr_storage *ss, socklen_t *len, char *err, size_t errlen);

/* Is this a loopback address (127.0.0.0/8, ::1, ::ffff:127.x)? */
int	load_addr_is_loopback(const struct sockaddr_storage *);

/* "127.0.0.1:8080" / "[::1]:8080" into out. */
void	load_addr_str(const struct sockaddr_storage *, char *out, size_t outlen);

/* Parse a duration "10", "10s", "500ms", "2m" into seconds; -1 if bad. */
double	load_parse_seconds(const char *);

/* Parse a positive rate/count "1000", "10k", "1.5m"; -1 if bad. */
double	load_parse_number(const char *);

/* Raise RLIMIT_NOFILE to its hard limit; returns the new soft limit. */
long	load_raise_nofile(void);

/* Fast non-cryptographic random numbers for mask keys (per thread state). */
uint32_t load_rand32(uint64_t *state);

/* ---- load_hist.c: log-bucketed latency histogram ----------------------- */

/*
 * An HDR-like histogram of nanosecond values: 64 linear sub-buckets per
 * power of two (relative error below 1.6 %), fixed size, no allocation
 * when recording.  Not thread-safe: one per worker, merged at the end.
 */
#define LOAD_HIST_SUB_BITS	6
#define LOAD_HIST_BUCKETS	((64 - LOAD_HIST_SUB_BITS + 1) << LOAD_HIST_SUB_BITS)

struct load_hist {
	uint64_t	count;
	uint64_t	min, max;
	double		sum;
	uint64_t	b[LOAD_HIST_BUCKETS];
};

void	load_hist_init(struct load_hist *);
/* Record one value (negative values count as 0). */
void	load_hist_add(struct load_hist *, int64_t ns);
/* Add every count of src to dst. */
void	load_hist_merge(struct load_hist *dst, const struct load_hist *src);
/*
 * The value at quantile q (0..1) in nanoseconds, the upper edge of its
 * bucket but never above the exact maximum; 0 for an empty histogram.
 */
uint64_t load_hist_quantile(const struct load_hist *, double q);

/* ---- load_json.c: top-level JSON object scanner ------------------------- */

/* A string value found by load_json_scan: raw bytes between the quotes. */
struct load_jstr {
	const char	*p;
	size_t		 n;
};

struct load_jmsg {
	struct load_jstr type, body, client_id, code;
};

/*
 * Walk the members of one JSON object (a relay message) without building
 * anything, and point type/body/client_id/code at the raw text of those
 * string members (escapes are not decoded; the fields this tool reads never
 * carry any).  Nested values are skipped.  Returns 0, or -1 when the text is
 * not an object this scanner can walk.
 */
int	load_json_scan(const char *s, size_t n, struct load_jmsg *out);

/* Does j hold exactly the NUL-terminated string lit? */
int	load_json_eq(const struct load_jstr *j, const char *lit);

/* ---- load_auth.c: credentials and HS256 tokens --------------------------- */

struct load_cred {
	int64_t		 uid;
	char		 sid[128];
	char		*token;		/* malloc'd JWT */
};

/*
 * Read `user_id sid [name]` lines (--sessions) and mint one HS256 token per
 * line with the secret in keyfile (one trailing newline stripped, like
 * common/jwtkey.c), kid = base64url(SHA-256("parley-kid:" || secret)[0..12]),
 * claims iss "parley", aud "parley-relay", sub, name, sid, iat, nbf, exp =
 * now + ttl_s, jti.  Or, with keyfile NULL, read `user_id sid token` lines
 * (--tokens).  Returns a malloc'd array (free with load_auth_free) and sets
 * *n, or NULL with err set.  The secret is wiped before returning.
 */
struct load_cred *load_auth_load(const char *credfile, const char *keyfile,
	    int64_t ttl_s, size_t *n, char *err, size_t errlen);
void	load_auth_free(struct load_cred *, size_t);

/* ---- load_conn.c: one WebSocket (or HTTP) client connection ------------ */

enum load_mode {
	MODE_IDLE,	/* open N connections and hold them */
	MODE_FANOUT,	/* relay group: publishers -> subscribers */
	MODE_PRIVATE,	/* relay private messages between pairs */
	MODE_RAW	/* fan-out through a plain broadcast server (nchan, raw) */
};

enum load_role {
	ROLE_IDLE,	/* idle mode: open and hold */
	ROLE_SUB,	/* fan-out subscriber */
	ROLE_PUB,	/* fan-out publisher (WebSocket) */
	ROLE_HTTPPUB,	/* raw mode publisher by HTTP POST (nchan) */
	ROLE_PSEND,	/* private: sender */
	ROLE_PRECV,	/* private: receiver */
	ROLE_N
};

enum load_state {
	ST_NEW = 0,
	ST_CONNECTING,	/* non-blocking connect() in progress */
	ST_HANDSHAKE,	/* upgrade request sent, waiting for 101 */
	ST_WELCOME,	/* 101 received, waiting for the relay's welcome */
	ST_READY,	/* usable */
	ST_DEAD		/* closed (failed or finished) */
};

/* Per-source sequence tracking: highest seq seen and a 256-seq window. */
struct load_track {
	uint64_t	hi;		/* highest seq seen + 1 (0: none yet) */
	uint64_t	win[4];		/* bit k: seq hi-1-k was received */
};

struct load_conn {
	int			 fd;
	uint32_t		 idx;		/* global connection number */
	uint8_t			 role;
	uint8_t			 state;
	uint8_t			 out_armed;	/* EPOLLOUT registered */
	uint8_t			 in_frag;	/* inside a fragmented message */
	uint8_t			 close_sent;
	uint8_t			 dirty;		/* on the worker's flush list */
	uint8_t			 counted;	/* open outcome recorded */
	int			 cred;		/* index in creds, -1 none */
	int64_t			 peer_uid;	/* private: partner's user id */
	int64_t			 t_start;	/* connect() time */
	char			 accept[29];	/* expected Sec-WebSocket-Accept */
	/* Bytes received but not yet parsed (NULL while none). */
	char			*rbuf;
	size_t			 rlen, rcap;
	/* A fragmented message being reassembled. */
	char			*mbuf;
	size_t			 mlen, mcap;
	/* Bytes to send: wbuf[woff..wlen). */
	char			*wbuf;
	size_t			 woff, wlen, wcap;
	/* Receivers: one track per source (fan-out: publishers; private: 1). */
	struct load_track	*tracks;
	int			 ntracks;
	/* In the measured window: messages received (new) or sent. */
	uint64_t		 got, sent;
	/* HTTP publisher: ring of scheduled times of unanswered requests. */
	int64_t			*hq;
	uint32_t		 hq_head, hq_tail;	/* tail - head = pending */
};

/* Close codes, HTTP statuses or error codes with their counts. */
struct load_codes {
	int		 n;
	char		 name[LOAD_NCODES][32];
	uint64_t	 count[LOAD_NCODES];
};

/* Add n to the count of name (the last slot takes every overflow). */
void	load_codes_add(struct load_codes *, const char *name, uint64_t n);
/* Merge src into dst. */
void	load_codes_merge(struct load_codes *dst, const struct load_codes *src);

/* What a run was told to do; read-only once the workers start. */
struct load_opts {
	enum load_mode		 mode;
	int			 raw;		/* no auth, /sub/ and /pub/ paths */
	int			 http_pub;	/* raw: publish by HTTP POST */
	struct sockaddr_storage	 dst;
	socklen_t		 dstlen;
	char			 hosthdr[128];
	char			 path[256];	/* relay: /ws */
	char			 sub_path[256];	/* raw: /sub/<channel> */
	char			 pub_path[256];	/* raw: /pub/<channel> */
	struct sockaddr_storage	 src[LOAD_MAX_SRC];
	socklen_t		 srclen[LOAD_MAX_SRC];
	int			 nsrc;
	struct sockaddr_storage	 pubsrc;	/* --pub-src: publishers' */
	socklen_t		 pubsrclen;	/* 0: none */
	int			 total;		/* connections */
	int			 nidle, subs, pubs, pairs;
	int			 nsources;	/* pubs, or pairs (senders) */
	double			 rate;		/* messages/s, all sources */
	double			 connect_rate;
	int			 max_pending;
	double			 open_timeout, warmup, duration, drain;
	int64_t			 group;
	const char		*origin;
	int			 threads;
	int			 verbose;
	size_t			 wmax;		/* per-connection send backlog cap */
	const struct load_cred	*creds;
	size_t			 ncreds;
	char			 nonce[9];	/* makes client_ids unique per run */
};

enum load_phase { PH_CONNECT = 0, PH_RUN, PH_STOP };

/* Run control shared by the main thread and the workers. */
struct load_ctl {
	atomic_int		 phase;
	/* Written by main before phase becomes PH_RUN (release/acquire). */
	int64_t			 t0, t_meas0, t_meas1, t_send_end;
	uint8_t			*ready;		/* per connection, at connect end */
	uint8_t			*src_ok;	/* per source: may send */
};

struct load_stats {
	uint64_t		 opened, failed, ready_role[ROLE_N];
	uint64_t		 dropped;	/* open connections lost in the run */
	uint64_t		 sent, sent_total, unsent, lag_late;
	uint64_t		 delivered, delivered_total, dup, ooo, old;
	uint64_t		 bad_body, bad_msg, pub_rx, other_msgs;
	uint64_t		 acks, acks_total, pings;
	uint64_t		 rx_bytes, tx_bytes, reads, writes;
	struct load_codes	 fail_codes;	/* why opening failed */
	struct load_codes	 closes;	/* why open connections ended */
	struct load_codes	 errors;	/* relay "error" codes, HTTP statuses */
	struct load_hist	 lat, ack, open, lag;
};

/* One epoll loop and the connections it owns (idx % threads == its idx). */
struct load_worker {
	int			 idx;
	const struct load_opts	*o;
	struct load_ctl		*ctl;
	int			 ep;
	struct load_conn	*conns;		/* conns[i] has idx i*threads+w */
	int			 nconns;
	struct load_conn	**dirty;
	int			 ndirty;
	pthread_t		 th;
	char			*scratch;
	uint64_t		 rng;
	/* Connect phase. */
	int			 next_open, scan_from, pending, max_pending;
	int64_t			 next_open_at, last_scan;
	double			 open_gap_ns;
	atomic_int		 connect_done;
	/* Run phase: the next global message number to consider. */
	uint64_t		 next_n;
	int			 has_sources;
	int			 run_seen;	/* times below copied from ctl */
	int64_t			 t0, t_meas0, t_meas1, t_send_end;
	struct load_stats	 st;
};

/*
 * Set up worker `idx` and its connections.  Returns 0, or -1 with err set.
 */
int	load_conn_worker_init(struct load_worker *, const struct load_opts *,
	    struct load_ctl *, int idx, char *err, size_t errlen);
/* Free what load_conn_worker_init allocated (after the thread ended). */
void	load_conn_worker_free(struct load_worker *);
/* Start connection c (socket, bind, connect). */
void	load_conn_start(struct load_worker *, struct load_conn *, int64_t now);
/* Handle epoll events for c. */
void	load_conn_event(struct load_worker *, struct load_conn *, uint32_t ev,
	    int64_t now);
/* Fail connections that took longer than --open-timeout to open. */
void	load_conn_timeouts(struct load_worker *, int64_t now);
/* Write out every connection with queued bytes. */
void	load_conn_flush_dirty(struct load_worker *);
/* Queue one publish (WebSocket message or HTTP POST) of message number n
 * from c; returns 0, or -1 when c cannot take it (not ready, backlog). */
int	load_conn_publish(struct load_worker *, struct load_conn *, uint64_t n,
	    int64_t sched);
/* Close every connection (a 1000 close frame first when open). */
void	load_conn_close_all(struct load_worker *);

/* ---- load_run.c: the worker loop ---------------------------------------- */

/* Scheduled time of global message n (open loop: t0 + n / rate). */
int64_t	load_run_sched(const struct load_worker *, uint64_t n);
/* The worker thread: connect, run, stop; see load_run.c. */
void	*load_run_thread(void *);
/* Add src's counters and histograms to dst. */
void	load_run_merge(struct load_stats *dst, const struct load_stats *src);

#endif
