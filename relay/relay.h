/*
 * relay.h: the relay's one internal header, a section per file.
 *
 * Threads (see parley-relay(8), "ARCHITECTURE"):
 *   civetweb workers  one per socket: handshake, then every inbound frame
 *                     (ws.c, cmd.c); 100 KiB stacks, so no deep recursion,
 *                     no big buffers, no database calls except through the
 *                     pool with a bounded wait (handshake authentication).
 *   writers (outq.c)  drain per-connection queues with non-blocking sends;
 *                     nothing else ever writes to a WebSocket.  They also
 *                     resubmit jobs parked until a connection's bulk
 *                     output has drained (flow control, outq.c).
 *   db workers        run jobs (dbpool.c) on connections of their own.
 *                     A connection's commands go through its own lane
 *                     (cmd.c): one job in the pool at a time, the rest
 *                     waiting in arrival order, so they take effect (and
 *                     messages commit) in the order they were sent.
 *   listener          LISTEN/NOTIFY and fan-out (listen.c, deliver.c,
 *                     group.c, and the listener halves of convo.c and
 *                     presence.c).
 *   presence          this relay's rows in parley.relays/connections, in
 *                     order, on a connection of its own (presence.c).
 *   timer             heartbeats, deadlines, token expiry (timer.c).
 *   main              signals: SIGTERM drains, SIGHUP reloads (main.c).
 *
 * Lock order: registry (conn.c) -> group cache (group.c) -> conn->mu ->
 * writer->mu, and conn->mu -> deliver.c's table lock (deliver_mu, held
 * for a lookup only).  Nothing holding conn->mu takes the registry lock.
 */
#ifndef PARLEY_RELAY_H
#define PARLEY_RELAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "cfg.h"
#include "db.h"
#include "jsonutil.h"
#include "jwtkey.h"
#include "log.h"
#include "origin.h"
#include "util.h"

struct mg_connection;
struct mg_context;
struct conn;
struct frame;
struct auth_ident;
struct job;

#define RELAY_PROGNAME		"parley-relay"
#define RELAY_REF_MAX		64	/* PROTOCOL §2: "ref" <= 64 bytes */
#define RELAY_CLIENT_ID_MAX	64	/* PROTOCOL §2: "client_id" <= 64 */
#define RELAY_INSTANCE_MAX	64	/* client_instance */
#define RELAY_CONV_MAX		48	/* "group:<id>" / "dm:<a>:<b>" */
#define RELAY_CLOSE_GRACE_MS	2000	/* our close frame -> force shutdown */
#define RELAY_PRESENCE_WAIT_MS	2000	/* connect waits for its presence row */
#define RELAY_LANE_MAX		1000	/* commands waiting per connection */
#define RELAY_LANE_BYTES	(4 << 20)	/* their bodies, bytes */
#define RELAY_BACKFILL_MAX	256	/* conversations deferred per connection */
#define RELAY_BACKFILL_LAG	20000	/* messages a deferred one may lag: 4030 */
#define RELAY_MARK_MAX		256	/* conversations a sync ran ahead in */

/* ------------------------------------------------------------ rcfg.c */

/*
 * Live settings: an immutable, reference-counted snapshot.  SIGHUP builds a
 * new one and swaps it in; holders of the old one keep it until they put it.
 */
struct rcfg {
	atomic_int		 refs;
	struct jwtkeyset	*keys;
	struct jwtkey_params	 jp;		/* points into issuer/audience */
	char			*issuer, *audience;
	struct origin_list	 origins;	/* empty: same host only */
	int64_t			 heartbeat_ms, conn_timeout_ms, auth_timeout_ms;
	int64_t			 max_frame, max_conn_per_user, flood_limit;
	int64_t			 send_queue;
	double			 rate;		/* commands per second; burst 2x */
	int			 presence_contacts;
	int			 query_token;	/* accept ?token= (off) */
	int			 auth_frame;	/* first-frame auth allowed */
	double			 conn_rate;	/* per address per second; 0 off */
	char			**proxies;	/* trusted, canonical addresses */
	size_t			 nproxies;
};

/* Settings fixed for the life of the process (not reloadable). */
struct rcfg_boot {
	char		*db;		/* conninfo ("" = libpq defaults) */
	char		*listen;	/* civetweb listening_ports syntax */
	char		*relay_id;
	int		 db_pool;
	int		 writers;
	int		 max_connections;
};

extern struct rcfg_boot rcfg_boot;

/*
 * Parse argv and load everything.  Returns 0 to run, 1 when the action is
 * done and the process should exit 0 (--help, --version, --check-config,
 * --print-config), -1 after printing a one-line error (exit 1).
 */
int	rcfg_init(int argc, char **argv);
/* Reload configuration and keys (SIGHUP).  0, or -1 keeping the old ones. */
int	rcfg_reload(void);
/* The current snapshot with a reference held; never NULL after rcfg_init. */
struct rcfg *rcfg_get(void);
void	rcfg_put(struct rcfg *);
/* Release everything at exit. */
void	rcfg_shutdown(void);

/* ------------------------------------------------------------ metrics.c */

enum metrics_ctr {
	M_CONN_ACCEPTED = 0,	/* WebSocket upgrades */
	M_CONN_REFUSED,		/* handshakes refused (any status) */
	M_AUTH_OK,
	M_MSG_IN,		/* private/group messages received */
	M_MSG_STORED,		/* committed (not duplicates) */
	M_MSG_OUT,		/* message events queued to connections */
	M_ACKS,
	M_CMDS,			/* commands of any type */
	M_NOTIFY,		/* notifications received */
	M_FRAMES_OUT,
	M_BYTES_OUT,
	M_DB_RECONNECTS,
	M_DEFERRED,		/* catch-up deliveries deferred (deliver.c) */
	M_PARKED,		/* jobs parked for bulk output to drain */
	M_POST_BATCHES,		/* group commits of 2 or more messages */
	M_POST_BATCHED,		/* messages in them */
	M_POST_SPLITS,		/* batches stored one by one instead */
	M__COUNT
};

void	metrics_inc(enum metrics_ctr);
void	metrics_add(enum metrics_ctr, int64_t);
/* Error replies by PROTOCOL §2 code ("bad_request" ...). */
void	metrics_error(const char *code);
/* Close codes we sent or received. */
void	metrics_close(int code);
/* Open authenticated connections (+1 / -1). */
void	metrics_conn_gauge(int delta);
/* Observations: database statement latency, notification lag. */
void	metrics_db_latency_us(int64_t us);
void	metrics_notify_lag_ms(int64_t ms);
/* Prometheus text exposition, malloc'd, or NULL. */
char	*metrics_render(size_t *len);

/* ------------------------------------------------------------ outq.c */

/*
 * One encoded WebSocket frame (header + payload), shared by every queue it
 * is in: a group message is encoded once for all recipients.
 */
struct frame {
	atomic_int	 refs;
	uint32_t	 len;		/* bytes in data */
	uint8_t		 opcode;
	uint8_t		 bulk;		/* relay-initiated bulk output: paced by
					   its producer, not counted toward
					   PARLEY_SEND_QUEUE (set before the
					   first outq_send, never changed) */
	unsigned char	 data[];
};

/* A connection's outbound queue (under conn->mu). */
struct outq {
	struct frame	**ring;
	uint32_t	 cap, head, count;
	size_t		 off;		/* bytes of ring[head] already sent */
	size_t		 bytes;		/* queued, not yet sent */
	size_t		 bulk;		/* of which in bulk frames */
};

struct writer;

/* A frame with `payload` (server frames are not masked).  NULL on ENOMEM. */
struct frame *outq_frame(int opcode, const void *payload, size_t len);
void	outq_frame_ref(struct frame *);
void	outq_frame_unref(struct frame *);

/* Start and stop `n` writer threads.  start: 0 or -1. */
int	outq_start(int n);
void	outq_stop(void);

/*
 * Give the connection (its fd known) to a writer.  Called once, from the
 * ready handler, before the connection is published.  0 or -1.
 */
int	outq_attach(struct conn *);

/*
 * Queue a frame (a reference is taken).  Never blocks.  Returns 0; or -1
 * when the connection is closing (frame dropped: the peer is going away) or
 * when the live (not bulk) part of the queue would exceed PARLEY_SEND_QUEUE,
 * in which case the connection is being closed with 4030 (PROTOCOL §2:
 * never a silent drop).  Bulk frames are never refused for size: their
 * producers pace themselves with outq_bulk_full / outq_park.
 */
int	outq_send(struct conn *, struct frame *);
/* Same, for a caller already holding conn->mu. */
int	outq_send_locked(struct conn *, struct frame *);
/* Queue the close frame (bypasses the bound); conn->mu held. */
void	outq_close_locked(struct conn *, int code, const char *reason);
/* Drop everything queued except a partly sent frame; conn->mu held. */
void	outq_drop_locked(struct conn *);
/* Bytes queued and not yet sent. */
size_t	outq_queued(struct conn *);
/*
 * Bulk pacing (parley-relay(8), "FLOW CONTROL"): a producer stops filling
 * while the unsent bulk bytes are at or above half of the connection's
 * PARLEY_SEND_QUEUE and continues once they have drained to a quarter.
 * outq_bulk_full_locked: conn->mu held; 1 when at or above the mark.
 */
int	outq_bulk_full_locked(const struct conn *);
/*
 * Park a job until the connection's bulk output has drained: 1 parked
 * (the writer resubmits it with dbpool_submit, or outq_detach drops it),
 * 0 when there is room now (not parked; run on), -1 when the connection
 * is closing (not parked; the caller finishes the job).  conn->mu held
 * for the _locked form.
 */
int	outq_park(struct conn *, struct job *);
int	outq_park_locked(struct conn *, struct job *);
/* Release the queue memory (conn being freed). */
void	outq_free(struct outq *);

/*
 * The close handler's part: wait (bounded) for a queued close frame to go
 * out, then take the socket out of the writer's epoll set.  After this no
 * thread writes to the fd.
 */
void	outq_detach(struct conn *);

/* ------------------------------------------------------------ conn.c */

enum conn_state {
	CONN_NEW = 0,	/* upgraded; waiting for the first-frame auth */
	CONN_OPEN,	/* authenticated */
	CONN_CLOSING,	/* our close frame is queued or sent */
	CONN_GONE	/* the socket is being closed by civetweb */
};

/* Client ids sent on this connection and not yet seen delivered. */
struct conn_expect {
	char		 client_id[RELAY_CLIENT_ID_MAX + 1];
	int64_t		 at_ms;		/* monotonic, for expiry */
};

/* A conversation whose delivery to this connection is deferred (deliver.c). */
struct conn_backfill {
	char		 conv[RELAY_CONV_MAX];
	int64_t		 after;		/* delivered up to this seq */
	int64_t		 upto;		/* handed over by the listener up to */
};

/*
 * A conversation in which a sync reply queued rows the listener has not
 * delivered yet (deliver.c): it skips them for this connection.
 */
struct conn_mark {
	char		 conv[RELAY_CONV_MAX];
	int64_t		 seq;		/* queued up to this seq */
	int64_t		 at_ms;		/* monotonic, the oldest goes first */
};

struct cmd_job;

struct conn {
	uint64_t		 id;		/* unique in this process */
	atomic_int		 refs;
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;		/* outq_detach waits here */

	/* Fixed before the connection is published. */
	char			 ip[48];
	int			 port;
	int64_t			 opened_ms;	/* monotonic */
	int64_t			 send_limit;	/* PARLEY_SEND_QUEUE at open */

	/*
	 * Identity: written before publication (handshake auth) or under
	 * the registry write lock (first-frame auth); read by this
	 * connection's reader thread, or under the registry lock.
	 */
	int64_t			 uid;		/* 0 until authenticated */
	char			 name[256];
	char			 sid[128];
	char			 instance[RELAY_INSTANCE_MAX + 1];
	struct auth_ident	*hs;		/* handshake auth, until ready */
	int			 presence;	/* has a connections row (reader) */

	/* Under mu. */
	enum conn_state		 state;
	int			 fd;		/* -1 until known, and after GONE */
	struct writer		*w;
	struct outq		 q;
	int			 in_ready;	/* on the writer's ready list */
	int			 wblocked;	/* socket full: wait for EPOLLOUT */
	int			 werr;		/* a send failed: drop output */
	int			 flushing;	/* outq_detach is waiting */
	int			 close_queued, close_sent, shut;
	int			 close_code;
	int64_t			 close_deadline_ms;
	int64_t			 token_exp;	/* epoch s */
	int64_t			 session_exp;	/* epoch s, 0 = unknown */
	int			 expiring_sent;
	int64_t			 next_ping_ms;	/* monotonic */
	struct conn_expect	*expect;
	size_t			 nexpect, capexpect;
	struct job		*parked;	/* waiting for bulk output to drain */
	/* The command lane (cmd.c): jobs waiting behind the running one. */
	struct cmd_job		*lane_head, *lane_tail;
	size_t			 lane_n, lane_bytes;
	int			 lane_busy;	/* a job of the lane runs or is parked */
	/* Deferred delivery (deliver.c). */
	struct conn_backfill	*bf;
	size_t			 nbf;
	int			 bf_job;	/* a backfill job exists */
	/* What sync replies queued ahead of the listener (deliver.c). */
	struct conn_mark	*mk;
	size_t			 nmk, capmk;

	/* Reader thread only (ws.c, cmd.c). */
	char			*frag;		/* fragmented message so far */
	size_t			 fraglen;
	size_t			 fragcap;	/* bytes allocated at frag */
	int			 frag_on;
	double			 bucket;	/* rate-limit tokens */
	int64_t			 bucket_ms;
	int64_t			 limited_run;	/* rate_limited in a row */

	_Atomic int64_t		 last_rx_ms;	/* monotonic; any frame */

	/* Registry links (under the registry lock). */
	struct conn		*all_prev, *all_next;
	struct conn		*user_next, *user_prev;
	int			 indexed;	/* in the user index */
	int			 registered;	/* in the all-list */
};

/* Log with the connection prefix "conn=N uid=N ip=A:". */
#define CONN_FMT	"conn=%llu uid=%lld ip=%s: "
#define CONN_ARGS(c)	(unsigned long long)(c)->id, (long long)(c)->uid, (c)->ip
#define clog_info(c, fmt, ...)	log_info(CONN_FMT fmt, CONN_ARGS(c), ##__VA_ARGS__)
#define clog_debug(c, fmt, ...)	log_debug(CONN_FMT fmt, CONN_ARGS(c), ##__VA_ARGS__)
#define clog_warnx(c, fmt, ...)	log_warnx(CONN_FMT fmt, CONN_ARGS(c), ##__VA_ARGS__)
#define clog_warnx_rl(c, fmt, ...) \
	log_warnx_ratelimited(10, CONN_FMT fmt, CONN_ARGS(c), ##__VA_ARGS__)

/* Registry setup/teardown.  init: 0 or -1. */
int	conn_init(void);
void	conn_fini(void);

/* A new connection object (refs = 1, state CONN_NEW), or NULL. */
struct conn *conn_new(const char *ip, int port);
void	conn_ref(struct conn *);
/* Drop a reference; the last one frees the object. */
void	conn_unref(struct conn *);

/*
 * Find the socket of a just-upgraded civetweb connection by its address
 * pair (civetweb does not expose it).  Returns the fd or -1.
 */
int	conn_find_fd(const char *remote_ip, int remote_port, int local_port);
/* The fd is no longer ours (outq_detach, before civetweb closes it). */
void	conn_fd_release(int fd);

/* Add to the list of live connections (ready handler).  0 or -1. */
int	conn_register(struct conn *);
/* Remove from every index (close handler). */
void	conn_unregister(struct conn *);

/*
 * Make an authenticated connection reachable by user id, applying the
 * per-user cap and client_instance replacement (older ones closed with
 * 4009).  Sets the identity under the registry lock.
 */
void	conn_authenticated(struct conn *, int64_t uid, const char *name,
	    const char *sid, const char *instance, int64_t token_exp,
	    int64_t session_exp, int max_per_user);

/* A refreshed token (same user): new session id and expiry times. */
void	conn_reauth(struct conn *, const char *sid, int64_t token_exp,
	    int64_t session_exp);

/*
 * Close with `code` (RFC 6455 §7.4 / PROTOCOL §2 "Close codes"): queue the
 * close frame after what is queued (4030 drops the queue first), and force
 * the socket shut if the peer has not answered after RELAY_CLOSE_GRACE_MS.
 * Idempotent; any thread.
 */
void	conn_close(struct conn *, int code, const char *reason);
void	conn_close_locked(struct conn *, int code, const char *reason);

/* Calls fn for each live connection (registry read lock held: be quick). */
void	conn_foreach(void (*fn)(struct conn *, void *), void *);
/* Calls fn for each authenticated connection of `uid`; returns how many. */
int	conn_foreach_user(int64_t uid, void (*fn)(struct conn *, void *), void *);
/* Does `uid` have an authenticated connection here? */
int	conn_user_online(int64_t uid);
/* Live connections (registered). */
size_t	conn_count(void);
/* Next connection id. */
uint64_t conn_next_id(void);

/* ------------------------------------------------------------ dbpool.c */

/*
 * A unit of database work.  `run` executes on a pool thread with that
 * thread's connection; `drop` is called instead when the job cannot run
 * (queue full, shutting down).  Both own the job afterwards.
 */
struct job {
	struct job	*next;		/* pool queue, lane or parked list */
	void		(*run)(struct job *, struct db *);
	void		(*drop)(struct job *);
	/*
	 * Group commit: when set, the pool may hand this job to a worker
	 * together with the other jobs waiting that have the same run_batch
	 * (in submission order, up to DBPOOL_BATCH_MAX jobs or
	 * DBPOOL_BATCH_BYTES of `cost`), instead of calling run.
	 */
	void		(*run_batch)(struct job **, size_t, struct db *);
	size_t		 cost;		/* bytes, for batch limits */
	int64_t		 queued_ms;
};

/* Prepared statement names (dbpool.c defines the SQL). */
#define STMT_SESSION	"parley_relay_session"
#define STMT_POST	"parley_relay_post"
#define STMT_POST_BATCH	"parley_relay_post_batch"
#define STMT_HISTORY	"parley_relay_history"
#define STMT_SYNC	"parley_relay_sync"
#define STMT_CONVS	"parley_relay_convs"
#define STMT_READ	"parley_relay_read"
#define STMT_TYPING	"parley_relay_typing"
#define STMT_GROUPS	"parley_relay_groups"
#define STMT_JOIN	"parley_relay_join"
#define STMT_LEAVE	"parley_relay_leave"
#define STMT_USERS	"parley_relay_users"
#define STMT_REGISTER	"parley_relay_register"
#define STMT_HEARTBEAT	"parley_relay_heartbeat"
#define STMT_SWEEP	"parley_relay_sweep"
#define STMT_CONN_ADD	"parley_relay_conn_add"
#define STMT_CONN_DEL	"parley_relay_conn_del"
#define STMT_UNREGISTER	"parley_relay_unregister"
#define STMT_AFTER	"parley_relay_after"
#define STMT_RESYNC	"parley_relay_resync"

/* Start n workers on `conninfo`.  0 or -1. */
int	dbpool_start(const char *conninfo, int n);
void	dbpool_stop(void);
/* Queue a job; on a full queue or after stop, job->drop is called. */
void	dbpool_submit(struct job *);
/* Queue a job: 0, or -1 (full or stopping) leaving the job to the caller. */
int	dbpool_try_submit(struct job *);
/* Queue n jobs in order, all or none: 0, or -1 leaving them to the caller. */
int	dbpool_try_submit_many(struct job **, size_t n);
/* Timed statement execution with metrics; same contract as db_exec. */
int	dbpool_exec(struct db *, const char *stmt, int nparams,
	    const char *const *values, PGresult **res);
/* Are all pool connections up? */
int	dbpool_healthy(void);

/* ------------------------------------------------------------ ws.c */

/*
 * One frame from civetweb's data handler (RFC 6455 §5): enforces what
 * civetweb does not (RSV bits, reserved opcodes, control-frame rules,
 * continuation order, UTF-8, the size limit, at most 16 empty fragments
 * per message, counted in conn->frag_on), answers pings and close frames,
 * and hands complete text messages to cmd_message.  Returns 1 to keep
 * reading, 0 to let civetweb close the socket.
 */
int	ws_frame(struct conn *, int bits, const char *data, size_t len);

/* ------------------------------------------------------------ auth.c */

struct auth_ident {
	int64_t		 uid;
	char		 name[256];
	char		 sid[128];
	int64_t		 token_exp;
	int64_t		 session_exp;
};

enum auth_result {
	AUTH_OK = 0,
	AUTH_INVALID,		/* 401 invalid_token / 4001 */
	AUTH_EXPIRED,		/* 401 token_expired / 4010 */
	AUTH_REVOKED,		/* 401 session_revoked / 4011 */
	AUTH_UNAVAILABLE	/* 503 unavailable / 1011 */
};

/*
 * civetweb's connect handler: subprotocols, Origin, capacity, token and
 * session.  On refusal writes the HTTP status line, headers and JSON body
 * itself (mg_send_http_error writes no status line there) and returns
 * non-zero.  On success attaches a new struct conn to the civetweb
 * connection and returns 0.
 */
int	auth_handshake(const struct mg_connection *);

/* Verify a token and the live session.  Fills *id on AUTH_OK. */
enum auth_result auth_token(const char *token, struct auth_ident *id,
	    const char **reason);

/* The first-frame `auth` command (PROTOCOL §2). */
void	auth_frame(struct conn *, json_t *msg);

/* The `refresh` command. */
void	auth_refresh(struct conn *, json_t *msg, const char *ref);

/* Free the per-address connection-rate state (exit). */
void	auth_fini(void);

/* Queue `welcome` (PROTOCOL §2) for the identity just verified. */
void	auth_welcome(struct conn *, const struct auth_ident *);

/* ------------------------------------------------------------ cmd.c */

/*
 * A complete text message from an authenticated or unauthenticated client.
 * Decodes strictly and dispatches; every reply carries the command's ref.
 */
void	cmd_message(struct conn *, const char *buf, size_t len);

/* Queue a JSON object (reference stolen) to one connection.  0 / -1. */
int	cmd_send_json(struct conn *, json_t *);

/*
 * A command that runs on a database worker.  Embed first in the command's
 * own job struct; cmd_job_new fills it (a reference to the connection, the
 * user, the ref) and cmd_job_free releases it.
 */
struct cmd_job {
	struct job	 job;
	struct conn	*c;
	int64_t		 uid;
	char		 ref[RELAY_REF_MAX + 1];
	int		 has_ref;
	int		 in_lane;	/* holds c's lane: freeing it runs the next */
	size_t		 cost;		/* bytes it holds while waiting (body) */
	const char	*drop_code;	/* error code when dropped */
	const char	*drop_msg;
};

/*
 * A zeroed job of `size` bytes for c's command, with `run` set and a drop
 * that answers `unavailable`.  NULL (and an `internal` error sent) when out
 * of memory.
 */
void	*cmd_job_new(struct conn *, const char *ref, size_t size,
	    void (*run)(struct job *, struct db *));
void	cmd_job_free(void *);
/*
 * Run a command job through its connection's lane: at once when the lane
 * is idle, else after the commands sent before it (PROTOCOL §2 order).  A
 * full lane (RELAY_LANE_MAX jobs or RELAY_LANE_BYTES) drops the job with
 * `rate_limited`.  Never blocks.
 */
void	cmd_job_submit(struct cmd_job *);
/*
 * Park a running job until the connection's bulk output drains (outq_park):
 * 1 parked (return from run without freeing; it runs again later), 0 go
 * on, -1 the connection is closing (finish and free the job).
 */
int	cmd_job_park(struct cmd_job *);
/* Queue a bulk reply (replies to history, sync, lists) with the ref. */
int	cmd_job_reply_bulk(struct cmd_job *, json_t *);
/* Queue a JSON object as a bulk frame (reference stolen).  0 / -1. */
int	cmd_send_json_bulk(struct conn *, json_t *);
/* Queue a reply carrying the job's ref (reference stolen). */
int	cmd_job_reply(struct cmd_job *, json_t *);
/* Answer a failed statement: `unavailable`, or the schema's SQLSTATE. */
void	cmd_job_dberr(struct cmd_job *, struct db *, int rc);
/* The job's ref, or NULL. */
const char *cmd_job_ref(const struct cmd_job *);
/*
 * The PROTOCOL §2 error code for a schema SQLSTATE (PA400 -> bad_request
 * ...; "internal" for anything else), with a message for the client.
 */
const char *cmd_sql_error(const char *sqlstate, const char **msg);
/* Queue {"type":"error","ref","code","message"}. */
void	cmd_error(struct conn *, const char *ref, const char *code,
	    const char *message);

/* ------------------------------------------------------------ post.c */

/* Commands: private_message, group_message (stored, then acked). */
void	post_private_message(struct conn *, json_t *, const char *ref);
void	post_group_message(struct conn *, json_t *, const char *ref);

/* ------------------------------------------------------------ convo.c */

/* Commands (PROTOCOL §2): history, sync, conversation_list, read, typing. */
void	convo_history(struct conn *, json_t *, const char *ref);
void	convo_sync(struct conn *, json_t *, const char *ref);
void	convo_list(struct conn *, json_t *, const char *ref);
void	convo_read(struct conn *, json_t *, const char *ref);
void	convo_typing(struct conn *, json_t *, const char *ref);
/* Listener side of the relay-to-relay channels parley_read, parley_typing. */
void	convo_notify_read(json_t *);
void	convo_notify_typing(PGconn *, json_t *);
/* Is s "dm:<a>:<b>" or "group:<g>" (syntax only)? */
int	convo_id_ok(const char *s);

/* ------------------------------------------------------------ member.c */

/* Commands: join_group, leave_group, group_list. */
void	member_join(struct conn *, json_t *, const char *ref);
void	member_leave(struct conn *, json_t *, const char *ref);
void	member_list(struct conn *, json_t *, const char *ref);

/* ------------------------------------------------------------ presence.c */

/*
 * Cluster presence: this relay's row in parley.relays (heartbeat, sweep of
 * dead relays) and one parley.connections row per authenticated
 * connection, written in order by one thread with its own connection.
 */
int	presence_start(const char *conninfo);
void	presence_stop(void);
/* Is the presence connection up (registered)? */
int	presence_healthy(void);
/*
 * An authenticated connection opens: queue its row and wait up to wait_ms
 * for it to be written (not at all while the database is away).  Call
 * before welcome; sets c->presence.
 */
void	presence_add(struct conn *, const struct auth_ident *,
	    const char *instance, int wait_ms);
/* A connection with c->presence closed (never blocks). */
void	presence_remove(struct conn *);
/* A parley_presence notification (listener thread). */
void	presence_notify(PGconn *, json_t *);
/*
 * A parley_evict notification (listener thread): close the named connection
 * of this relay with 4009 (client_instance replaced, or the per-user cap
 * reached, anywhere in the cluster).
 */
void	presence_evict(json_t *);
/* The user_list command. */
void	presence_user_list(struct conn *, json_t *, const char *ref);

/* ------------------------------------------------------------ group.c */

/*
 * Membership cache: group -> sorted member ids, loaded from
 * parley.group_member_ids and kept current by parley_member notifications.
 * Only valid while the listener is connected; flushed when it is not.
 */
void	group_fini(void);
/*
 * Member ids of `gid` (malloc'd array the caller frees, *n set), loading
 * them with `db` / `conn` when not cached.  Returns 0, or -1 (database).
 */
int	group_members(int64_t gid, PGconn *conn, int64_t **ids, size_t *n);
/* A parley_member notification. */
void	group_notify(const char *op, int64_t gid, int64_t uid);
/* Forget everything (listener lost notifications). */
void	group_flush(void);
/* Enable / disable caching (listener up / down). */
void	group_set_valid(int);
/* Forget groups unused for max_idle_ms. */
void	group_prune(int64_t max_idle_ms);

/* ------------------------------------------------------------ deliver.c */

void	deliver_fini(void);
/*
 * Columns of a message row as deliver_rows wants them, from a function
 * returning message_get's columns under the alias g.
 */
#define DELIVER_COLS \
	"g.id, g.conversation, g.seq, g.sender_id, g.sender_name, g.body, " \
	"g.client_id, (extract(epoch FROM g.created_at) * 1000)::bigint"

/* One row of DELIVER_COLS; strings point into the PGresult. */
struct deliver_row {
	int64_t		 id, seq, sender, created_ms;
	const char	*conv, *name, *body, *client_id;
};

void	deliver_parse(PGresult *, int row, struct deliver_row *);
/* The private_message / group_message event of a row, or NULL. */
json_t	*deliver_event(const struct deliver_row *);

/*
 * Deliver message rows (DELIVER_COLS) in result order, which must
 * be seq order within each conversation.  Runs on the listener thread.
 * Skips rows at or below the last seq delivered in their conversation and
 * fills gaps first; to each connection, delivers only rows above what a
 * sync reply already queued to it (deliver_mark_locked).
 */
void	deliver_rows(PGconn *, PGresult *);
/*
 * c->mu held, any thread: a `sync` reply has just queued row m to c.
 * Remembered (up to RELAY_MARK_MAX conversations per connection, only
 * while the listener may still deliver that row) so that no live,
 * catch-up or deferred delivery sends it to c again.
 */
void	deliver_mark_locked(struct conn *, const struct deliver_row *m);
/* Remember/forget that `c` sent client_id (its own copy is not delivered). */
void	deliver_expect(struct conn *, const char *client_id);
void	deliver_unexpect(struct conn *, const char *client_id);
/*
 * Drop expectations older than max_age_ms (timer); none while the
 * listener is down (its catch-up still needs them).
 */
void	deliver_expire(struct conn *, int64_t now_ms, int64_t max_age_ms);
/*
 * After the listener reconnected: deliver what was committed meanwhile,
 * by conversation and seq, to each connection only what it has not been
 * sent: messages created since lost_db_ms minus a margin, never before
 * first_db_ms (the first LISTEN; both the database's clock, epoch ms).
 * 0, or -1 when the connection failed.
 */
int	deliver_catch_up(PGconn *, int64_t lost_db_ms, int64_t first_db_ms);
/* Forget conversations idle for max_idle_ms. */
void	deliver_prune(int64_t max_idle_ms);
/* Queue a JSON object to every connection of a user (listener thread). */
void	deliver_user_json(int64_t uid, json_t *);
/*
 * The user left `conv` (a group): forget its deferred delivery on the
 * user's connections, so nothing more of it reaches them.
 */
void	deliver_backfill_forget(int64_t uid, const char *conv);

/* ------------------------------------------------------------ listen.c */

int	listen_start(const char *conninfo);
void	listen_stop(void);
/* Is the LISTEN connection up (and caught up)? */
int	listen_up(void);
/*
 * The database's clock, epoch ms, as the listener knows it: read at each
 * connect and advanced with the monotonic clock while up; while down, the
 * moment the connection was lost; 0 before the first connection.
 */
int64_t	listen_db_ms(void);

/* ------------------------------------------------------------ timer.c */

int	timer_start(void);
void	timer_stop(void);

/* ------------------------------------------------------------ server.c */

/* Start civetweb with our handlers.  0 or -1 (logged). */
int	server_start(void);
/* SIGTERM: close every WebSocket with 1001, wait up to ms for them. */
void	server_drain(int64_t ms);
/* Stop civetweb (joins its threads). */
void	server_stop(void);
/* Is the server draining (refuse new connections)? */
int	server_draining(void);
/* Write a complete HTTP response on a civetweb connection. */
void	server_reply(struct mg_connection *, int status, const char *ctype,
	    const char *extra_headers, const char *body, size_t len);
/* The same with {"error":code,"message":msg}. */
void	server_reply_error(struct mg_connection *, int status,
	    const char *code, const char *msg, const char *extra_headers);

#endif
