/*
 * token.h: the token service's internal interfaces, one section per file.
 *
 * parley-token logs users in, reads the session cookie, and mints relay
 * tokens (PROTOCOL.md §1).  main.c only launches; everything else lives in
 * libtoken.a so the unit tests link exactly the code that runs.
 *
 *	conf.c		option table, validated snapshots, reload
 *	request.c	one HTTP request as CGI/FastCGI variables, body reading
 *	reply.c		status, headers and JSON bodies out
 *	cookie.c	the Cookie header (RFC 6265) and our session cookie
 *	form.c		login credentials from JSON or urlencoded bodies
 *	handler.c	routing on the last path segment, method and Origin
 *	login.c		POST login
 *	session.c	GET session, POST logout, cookie -> session row
 *	token.c		POST token
 *	jwks.c		GET jwks.json
 *	store.c		the SQL functions the service calls
 *	scache.c	the session cache and its LISTEN thread
 *	server.c	FastCGI: listening socket, worker threads, signals
 *	cgi.c		plain CGI: one request and exit
 */
#ifndef PARLEY_TOKEN_H
#define PARLEY_TOKEN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "cfg.h"
#include "db.h"
#include "jwtkey.h"
#include "origin.h"
#include "util.h"

#define TOKEN_PROGNAME	"parley-token"

/* -------------------------------------------------------------- conf.c */

/* The option table (the template; conf_build works on copies). */
extern const struct cfg_opt conf_opts[];

/*
 * One validated, immutable configuration with its keys.  Requests hold a
 * reference for their whole duration, so SIGHUP can publish a new one
 * without anybody seeing half of each.
 */
struct conf {
	atomic_int		 refs;
	struct cfg_opt		*opts;		/* cfg_dup copy, values loaded */
	struct jwtkeyset	*keys;
	struct jwtkey_params	 jwt;		/* issuer/audience point into opts */
	const char		*db;		/* conninfo, "" for libpq defaults */
	int64_t			 token_ttl_s;
	int64_t			 session_ttl_s;
	const char		*cookie_name;
	int			 cookie_secure;
	struct origin_list	 origins;
	const char		*relay_url;	/* NULL: not sent */
	size_t			 max_body;
	int			 log_level;
	/* Read once at startup; a reload that changes them only warns. */
	const char		*listen;	/* NULL: stdin/systemd/CGI */
	int			 threads;
	int64_t			 session_cache_ms;	/* 0: no session cache */
	size_t			 session_cache_size;	/* entries */
	mode_t			 socket_mode;
	const char		*socket_group;	/* NULL: unchanged */
};

/*
 * Load the option table from flags, environment, file and defaults into a
 * new copy.  Returns it (cfg_free() it), or NULL with err set.  No
 * validation beyond types: see conf_build.
 */
struct cfg_opt *conf_load_opts(const struct cfg_cli *, char *err, size_t errlen);

/*
 * Validate a loaded table and load its keys into a new snapshot with one
 * reference.  Takes ownership of opts in every case.  Returns the snapshot,
 * or NULL with err set to one line ("jwt_key_file: not set").
 */
struct conf *conf_build(struct cfg_opt *opts, char *err, size_t errlen);

/* Reference counting: conf_hold adds one, conf_release drops and frees. */
void	conf_hold(struct conf *);
void	conf_release(struct conf *);

/* Make `c` current, taking over the caller's reference. */
void	conf_publish(struct conf *c);
/* A new reference to the current snapshot (never NULL after publish). */
struct conf *conf_acquire(void);
/* Drop the current snapshot at exit. */
void	conf_shutdown(void);

/* ----------------------------------------------------------- request.c */

/*
 * How a request arrives and its answer leaves: CGI (environment, stdin,
 * stdout) and FastCGI (FCGX streams) each provide one.
 */
struct request_io {
	/* Request variable (REQUEST_METHOD, HTTP_COOKIE ...), or NULL. */
	const char	*(*param)(void *ctx, const char *name);
	/* Up to n body bytes: count, 0 at end of input, -1 on error. */
	ssize_t		 (*read)(void *ctx, void *buf, size_t n);
	/* All n bytes of the response: 0 or -1. */
	int		 (*write)(void *ctx, const void *buf, size_t n);
};

#define REQUEST_ROUTE_MAX	32

struct request {
	const struct request_io	*io;
	void			*ctx;

	const char	*method;	/* never NULL ("" when absent) */
	const char	*cookie;	/* NULL when absent, also below */
	const char	*origin;
	const char	*host;
	const char	*scheme;	/* "http" or "https" (request_scheme) */
	const char	*content_type;
	const char	*content_length;
	const char	*remote_addr;
	const char	*user_agent;
	char		 route[REQUEST_ROUTE_MAX];	/* "" when none */
	int		 head;		/* HEAD: headers only */

	struct conf	*conf;		/* set by the caller */
	struct db	*db;

	int		 status;	/* of the reply sent, 0 before */
	int		 body_read;	/* request_read_body read it all */
};

/* Fill *req from io (does not read the body). */
void	request_init(struct request *req, const struct request_io *io,
	    void *ctx);

/*
 * The scheme the client used, as the web server tells it: "https" when
 * REQUEST_SCHEME is https or HTTPS is set to anything but "off" (RFC 3875
 * meta-variables as nginx and Apache send them), else "http".  It decides
 * the same-host Origin rule (origin_allowed).
 */
const char *request_scheme(const char *https, const char *request_scheme);

/*
 * The route: the last segment of SCRIPT_NAME + PATH_INFO, written to out.
 * Returns 0, or -1 (out = "") when it is empty or longer than outlen - 1.
 */
int	request_route(const char *script_name, const char *path_info,
	    char *out, size_t outlen);

enum request_body {
	REQUEST_BODY_OK = 0,
	REQUEST_BODY_BAD = -1,		/* short, unreadable: 400 */
	REQUEST_BODY_TOO_LARGE = -2	/* over the cap or invalid length: 413 */
};

/*
 * CONTENT_LENGTH -> *len.  NULL or "" is 0 (RFC 3875 §4.1.2: no body).
 * Digits only; a value above cap, or not a number, is
 * REQUEST_BODY_TOO_LARGE, decided without reading anything.
 */
enum request_body request_content_length(const char *value, size_t cap,
	    size_t *len);

/*
 * Read exactly CONTENT_LENGTH bytes (at most cap) into a new NUL-terminated
 * buffer.  On REQUEST_BODY_OK *body is malloc'd (explicit_bzero and free it;
 * see request_body_free); otherwise *body is NULL.
 */
enum request_body request_read_body(struct request *req, size_t cap,
	    char **body, size_t *len);
void	request_body_free(char *body, size_t len);

/*
 * Read and discard what is left of the body (at most `limit` bytes) so a
 * kept-alive FastCGI connection stays in step.  Returns 0 when the input was
 * consumed, -1 when it was not (close the connection).
 */
int	request_drain(struct request *req, size_t limit);

/* Header value of a request: a pointer into it, or NULL. */
const char *request_param(const struct request *req, const char *name);

/*
 * Is all of the request body consumed, so that what is left of the input
 * is only the end of the stream the web server sends right after it (no
 * body, or request_read_body read all of it)?  Then the reply can wait for
 * request_drain and leave in one write with the end of the response.
 */
int	request_body_done(const struct request *req);

/* ------------------------------------------------------------- reply.c */

struct reply {
	int		 status;
	const char	*cache_control;	/* default "no-store" */
	char		 headers[1024];	/* extra "Name: value\r\n" lines */
	size_t		 hlen;
	int		 overflow;
};

void	reply_init(struct reply *, int status);
/* Add a header line; a line that does not fit marks the reply broken. */
void	reply_header(struct reply *, const char *name, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

/*
 * Write status, headers and body (headers only for HEAD, and no
 * Content-Type/Content-Length for 204).  Every response carries
 * X-Content-Type-Options: nosniff and Cache-Control.  Returns 0 or -1.
 */
int	reply_send(struct request *, struct reply *, const char *ctype,
	    const char *body, size_t len);
/* Serialise obj (compact UTF-8) as application/json; decrefs obj. */
int	reply_json(struct request *, struct reply *, json_t *obj);
/* {"error":code,"message":message} with the reply's status and headers. */
int	reply_error_r(struct request *, struct reply *, const char *code,
	    const char *message);
/* The same with a fresh reply of `status`. */
int	reply_error(struct request *, int status, const char *code,
	    const char *message);
/* 503 unavailable with Retry-After: 5. */
int	reply_unavailable(struct request *);
/* 500 internal with a generic message. */
int	reply_internal(struct request *);
/* Reason phrase of a status ("Unauthorized"), "Unknown" otherwise. */
const char *reply_reason(int status);

/*
 * Append s to out (at *len, out of cap bytes) as a JSON string in double
 * quotes, escaped as jansson's dump escapes it, and NUL-terminate it.
 * Returns 0 with *len advanced, or -1 (*len unchanged) when it does not fit.
 */
int	reply_json_str(char *out, size_t cap, size_t *len, const char *s);

/*
 * Set-Cookie value for the session cookie: value with Max-Age=max_age_s,
 * or (value NULL) a clearing one with Max-Age=0.
 */
void	reply_set_cookie(struct reply *, const struct conf *,
	    const char *value, int64_t max_age_s);

/* ------------------------------------------------------------ cookie.c */

#define COOKIE_MAX_HEADER	16384	/* longer Cookie headers: invalid */
#define COOKIE_MAX_VALUE	256
#define COOKIE_SECRET_LEN	32	/* random bytes behind a session cookie */

enum cookie_result {
	COOKIE_ABSENT = 0,
	COOKIE_FOUND = 1,
	COOKIE_INVALID = -1
};

/*
 * Find cookie `name` in a Cookie header ("a=1; b=2"; ',' is accepted as a
 * separator too, as servers join repeated headers with it).  The value is
 * unquoted and copied to value.  A repeated name with different values, an
 * over-long header or value, or bytes outside RFC 6265 cookie-octets in
 * our value are COOKIE_INVALID.
 */
enum cookie_result cookie_find(const char *header, const char *name,
	    char *value, size_t valuelen);

/*
 * What the database knows of our cookie: the SHA-256 of its value exactly as
 * sent (the text, not a decoding of it), so that an integrator's own session
 * table can compute the same with parley.token_hash(text).  Any valid cookie
 * value up to COOKIE_MAX_VALUE bytes is hashed: the cookies parley-token
 * mints are base64url of COOKIE_SECRET_LEN random bytes, but an
 * application's may look different.  COOKIE_FOUND with hash filled,
 * COOKIE_ABSENT, or COOKIE_INVALID.  Wipes its copy of the value.
 */
enum cookie_result cookie_hash(const char *header, const char *name,
	    unsigned char hash[UTIL_SHA256_LEN]);

/* Is name a valid cookie name (RFC 6265 token, 1-64 bytes)? */
int	cookie_name_ok(const char *name);

/* -------------------------------------------------------------- form.c */

#define FORM_USERNAME_MAX	64
#define FORM_PASSWORD_MAX	1024

/* Login credentials; both NUL-terminated, valid UTF-8 without NUL. */
struct credentials {
	char	*username;
	size_t	 ulen;
	char	*password;
	size_t	 plen;
};

/*
 * Decode application/x-www-form-urlencoded (body, len) and call cb for each
 * name=value pair with decoded, NUL-terminated strings ('+' is a space).
 * Fails on a bad %XX escape, invalid UTF-8 or a NUL byte.  Returns 0, -1
 * with *reason set, or what cb returned when it was not 0.
 */
int	form_parse(const char *body, size_t len,
	    int (*cb)(void *arg, const char *name, const char *value,
	    size_t vlen), void *arg, const char **reason);

/*
 * Credentials from a login body: JSON object {"username","password"}
 * (Content-Type application/json) or a urlencoded form.  Unknown members
 * are ignored; missing, repeated or mistyped ones, lengths outside
 * 1-64 (username) and 1-1024 (password) bytes are errors.  Returns 0, or
 * -1 with *reason set to a static message for the 400 reply.
 */
int	form_credentials(const char *content_type, const char *body,
	    size_t len, struct credentials *, const char **reason);
/* Wipe and free. */
void	form_credentials_clear(struct credentials *);

/* Media type of a Content-Type without parameters, case-insensitive. */
int	form_is_type(const char *content_type, const char *type);

/* ----------------------------------------------------------- handler.c */

enum handler_method {
	HANDLER_GET = 1,
	HANDLER_POST = 2
};

struct handler_route {
	const char		*name;		/* last path segment */
	enum handler_method	 method;
	void			(*fn)(struct request *);
};

extern const struct handler_route handler_routes[];

/*
 * Answer one request: 404 for an unknown route, 405 with Allow for a
 * method the route does not take, 403 for a foreign Origin on POST, else
 * the route's handler.  Always sends exactly one reply.
 */
void	handler_dispatch(struct request *);
/* The route entry for a name, or NULL. */
const struct handler_route *handler_find(const char *route);

/* ---------------------------------------------------- the route handlers */

void	login_handle(struct request *);		/* login.c */
void	session_get(struct request *);		/* session.c */
void	session_logout(struct request *);	/* session.c */
void	token_handle(struct request *);		/* token.c */
void	jwks_handle(struct request *);		/* jwks.c */

/* ----------------------------------------------------------- session.c */

/*
 * The SHA-256 of the session cookie's value in the request.  Returns
 * COOKIE_FOUND with hash filled, COOKIE_ABSENT or COOKIE_INVALID.
 */
enum cookie_result session_cookie_hash(const struct request *,
	    unsigned char hash[UTIL_SHA256_LEN]);

/* ------------------------------------------------------------- store.c */

enum store_result {
	STORE_OK = 0,
	STORE_NONE = 1,		/* no such session (zero rows / false) */
	STORE_UNAVAILABLE = -1,	/* 503 */
	STORE_ERROR = -2	/* 500 */
};

/* The prepared statements every worker connection gets. */
extern const struct db_stmt store_stmts[];

enum store_login_status {
	STORE_LOGIN_OK = 1,
	STORE_LOGIN_INVALID,
	STORE_LOGIN_THROTTLED
};

struct store_user {
	int64_t	 id;
	char	 name[256];
	char	 sid[128];
	int64_t	 expires_at;	/* epoch seconds */
};

struct store_login {
	enum store_login_status	 status;
	struct store_user	 user;		/* when STORE_LOGIN_OK */
	int64_t			 retry_after;	/* when STORE_LOGIN_THROTTLED */
};

/*
 * parley.login(): one round trip.  addr and user_agent may be NULL.
 * Returns STORE_OK with *out filled, STORE_UNAVAILABLE or STORE_ERROR
 * (logged here, rate-limited, never with parameter values).
 */
enum store_result store_login(struct db *, const struct credentials *,
	    const char *addr, const unsigned char hash[UTIL_SHA256_LEN],
	    int64_t ttl_s, const char *user_agent, struct store_login *out);

/* parley.session_lookup(): STORE_OK (*out filled), STORE_NONE, or failure. */
enum store_result store_session(struct db *,
	    const unsigned char hash[UTIL_SHA256_LEN], struct store_user *out);

/*
 * The durability check (parley-token(8), DESCRIPTION): the first time in
 * this process that a connection answers, read its synchronous_commit and,
 * when it is off, log at error level what a database crash could undo
 * (logouts among them).  The service keeps serving: it stores no messages.
 * Called by every store_* after a statement succeeded and by the FastCGI
 * server at startup; thread-safe, one SHOW per process.
 */
void	store_check_durable(PGconn *);

/* parley.logout(): STORE_OK when a live session was revoked, STORE_NONE. */
enum store_result store_logout(struct db *,
	    const unsigned char hash[UTIL_SHA256_LEN]);

/* ------------------------------------------------------------ scache.c */

/*
 * The session cache: SHA-256 of a cookie -> the session row
 * parley.session_lookup returned for it, so that most token requests need
 * no database round trip.  One per process (server mode only; CGI has
 * none), with a bounded number of entries (clock eviction) that are
 * answered for at most a TTL (PARLEY_SESSION_CACHE) and never at or past
 * the session's expires_at.  Only live sessions are stored, never "no such
 * session", so a fresh login works at once.
 *
 * Revocations come from a LISTEN connection on channel parley_session held
 * by a thread of its own (scache_start): a "revoke" notification drops
 * that sid's entries at once, "truncate" (or anything not understood)
 * drops all.  While that connection is down the cache is bypassed (every
 * lookup goes to the database), and it starts empty when LISTEN is back,
 * since notifications sent in between are lost.  Every invalidation moves
 * a generation counter; a lookup that began before one (scache_ticket)
 * is not stored, so a row read just before its revocation cannot be cached
 * after the notification was handled.  All functions are thread-safe.
 */
#define SCACHE_DEFAULT_SIZE	10000
#define SCACHE_CHANNEL		"parley_session"

struct scache_stats {
	uint64_t	hits, misses, stores, revoked, flushes, evictions;
	size_t		entries;
};

/*
 * Set up an empty cache of `capacity` entries, each answered for at most
 * ttl_ms, not live (scache_set_live) and without a LISTEN thread.  Call
 * before any thread uses it.  Returns 0, or -1 (out of memory, or it is
 * already set up).
 */
int	scache_init(size_t capacity, int64_t ttl_ms);
/* Wipe and free the cache; nothing may use it any more.  Safe when unset. */
void	scache_free(void);
/* Is the cache set up (scache_init succeeded and scache_free not called)? */
int	scache_enabled(void);

/*
 * Start the thread that LISTENs on parley_session with the current
 * configuration's database (it reconnects with back-off, and when
 * PARLEY_DB changes on reload) and makes the cache live while it listens.
 * Returns 0 or -1 (logged).  scache_stop ends it (waiting at most a few
 * seconds) and leaves the cache bypassed.
 */
int	scache_start(void);
void	scache_stop(void);

/*
 * Take before asking the database; pass to scache_put.  0 when the cache
 * is not live (then nothing will be stored).
 */
uint64_t scache_ticket(void);

/*
 * The cached session of a cookie hash, at monotonic time mono_ms and
 * wall-clock time now_s.  Returns 1 with *out filled, or 0 (not cached,
 * older than the TTL, expired, or the cache not live).
 */
int	scache_get(const unsigned char hash[UTIL_SHA256_LEN], int64_t mono_ms,
	    int64_t now_s, struct store_user *out);

/*
 * Store what the database said of a cookie hash, as of mono_ms (taken
 * before the query).  Does nothing, returning 0, when the cache is not
 * live or was invalidated since `ticket`; 1 when stored.
 */
int	scache_put(const unsigned char hash[UTIL_SHA256_LEN],
	    const struct store_user *u, uint64_t ticket, int64_t mono_ms);

/* Drop one cookie hash's entry (logout in this process). */
void	scache_forget(const unsigned char hash[UTIL_SHA256_LEN]);
/* Drop every entry of session `sid`; returns how many there were. */
size_t	scache_revoke(const char *sid);
/* Drop everything. */
void	scache_flush(void);
/* Live (answer from memory) or bypassed; either way the cache is emptied. */
void	scache_set_live(int live);

/*
 * Act on a parley_session payload: {"op":"revoke","sid":"12",...} drops
 * that sid, {"op":"truncate"} and anything unexpected drop everything.
 * Returns the number of entries dropped.
 */
size_t	scache_notify(const char *payload);

/* Counters since scache_init. */
void	scache_stats(struct scache_stats *);

/*
 * The session a cookie hash names, for the request: from the cache when it
 * has it, else from parley.session_lookup (then cached).  Same results as
 * store_session.  (session.c)
 */
enum store_result session_find(struct request *,
	    const unsigned char hash[UTIL_SHA256_LEN], struct store_user *out);

/* ------------------------------------------------------------ server.c */

enum server_mode {
	SERVER_STDIN = 1,	/* fd 0 is a listening socket (mod_fcgid, spawn-fcgi) */
	SERVER_SYSTEMD,		/* socket activation, fd 3 */
	SERVER_LISTEN		/* --listen unix:PATH or HOST:PORT */
};

/* Is fd a listening socket (SO_ACCEPTCONN)? */
int	server_is_listening(int fd);
/* The systemd-passed socket (fd 3) when LISTEN_PID/LISTEN_FDS name us, else -1. */
int	server_systemd_fd(void);

/*
 * Run the FastCGI server until SIGTERM/SIGINT/SIGUSR1 and return the exit
 * status (0, or 1 when it could not start or the socket failed).  SIGHUP
 * reloads through cli.  The current snapshot must have been published.
 */
int	server_run(enum server_mode, int listen_fd, const struct cfg_cli *cli);

/*
 * Open the --listen socket: "unix:PATH" (a stale socket file is replaced,
 * mode and group applied) or "HOST:PORT" / "[V6]:PORT".  Returns the fd,
 * or -1 with err set.
 */
int	server_listen(const struct conf *, char *err, size_t errlen);

/* --------------------------------------------------------------- cgi.c */

/* Serve the one CGI request of this process with conf; returns the exit status. */
int	cgi_run(struct conf *conf);
/* The answer of a CGI process whose configuration failed: a 500 on stdout. */
void	cgi_fail(void);

#endif
