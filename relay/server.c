/*
 * server.c: civetweb setup and its handlers: /ws (connect, ready, data,
 * close), /healthz and /metrics.
 *
 * civetweb runs one worker thread per connection (num_threads =
 * PARLEY_MAX_CONNECTIONS plus a few for plain HTTP and handshakes), with
 * its own WebSocket ping handling off: heartbeats, timeouts and every write
 * after the upgrade are ours (timer.c, outq.c).  The handlers here only
 * glue civetweb's callbacks to struct conn: the connect handler
 * authenticates (auth.c), the ready handler finds the socket and publishes
 * the connection, the data handler applies the frame rules (ws.c), and
 * the close handler takes the connection apart.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <civetweb.h>

#include "relay.h"

#define SERVER_SPARE_THREADS	16

static struct mg_context	*srv_ctx;
static atomic_int		 srv_draining;
static const char		*srv_protocols[] = { "parley.v1" };
static struct mg_websocket_subprotocols srv_subprotocols = { 1, srv_protocols };

static const char *
server_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

/* Write a whole response; see relay.h. */
void
server_reply(struct mg_connection *mgc, int status, const char *ctype,
    const char *extra, const char *body, size_t len)
{
	const struct mg_request_info *ri = mg_get_request_info(mgc);
	int head = ri && ri->request_method &&
	    strcmp(ri->request_method, "HEAD") == 0;

	mg_printf(mgc, "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Length: %zu\r\n"
	    "Cache-Control: no-store\r\n"
	    "Connection: close\r\n"
	    "%s\r\n", status, server_status_text(status), ctype, len,
	    extra ? extra : "");
	if (!head && len > 0)
		mg_write(mgc, body, len);
}

/* The same with a PROTOCOL §1-style error body; see relay.h. */
void
server_reply_error(struct mg_connection *mgc, int status, const char *code,
    const char *msg, const char *extra)
{
	json_t	*j = json_pack("{s:s, s:s}", "error", code, "message", msg);
	char	*s = jsonutil_dump(j);

	server_reply(mgc, status, "application/json", extra, s ? s : "{}",
	    s ? strlen(s) : 2);
	free(s);
	json_decref(j);
}

static int
server_method_ok(struct mg_connection *mgc)
{
	const struct mg_request_info *ri = mg_get_request_info(mgc);

	if (strcmp(ri->request_method, "GET") == 0 ||
	    strcmp(ri->request_method, "HEAD") == 0)
		return 1;
	server_reply_error(mgc, 405, "method_not_allowed",
	    "use GET", "Allow: GET, HEAD\r\n");
	return 0;
}

/* /healthz: 200 only while the pool and the LISTEN connection are up. */
static int
server_healthz(struct mg_connection *mgc, void *cb)
{
	int	db, lis, ok, n;
	char	body[160];

	(void)cb;
	if (!server_method_ok(mgc))
		return 405;
	db = dbpool_healthy() && presence_healthy();
	lis = listen_up();
	ok = db && lis && !atomic_load(&srv_draining);
	n = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"database\":%s,"
	    "\"listener\":%s,\"connections\":%zu}", ok ? "ok" : "unavailable",
	    db ? "true" : "false", lis ? "true" : "false", conn_count());
	server_reply(mgc, ok ? 200 : 503, "application/json",
	    ok ? NULL : "Retry-After: 5\r\n", body, (size_t)n);
	return ok ? 200 : 503;
}

static int
server_metrics(struct mg_connection *mgc, void *cb)
{
	char	*text;
	size_t	 len = 0;

	(void)cb;
	if (!server_method_ok(mgc))
		return 405;
	if ((text = metrics_render(&len)) == NULL) {
		server_reply_error(mgc, 500, "internal", "out of memory", NULL);
		return 500;
	}
	server_reply(mgc, 200, "text/plain; version=0.0.4; charset=utf-8",
	    NULL, text, len);
	free(text);
	return 200;
}

static int
server_ws_connect(const struct mg_connection *mgc, void *cb)
{
	(void)cb;
	return auth_handshake(mgc);
}

static void
server_ws_ready(struct mg_connection *mgc, void *cb)
{
	const struct mg_request_info	*ri = mg_get_request_info(mgc);
	struct conn			*c = mg_get_user_connection_data(mgc);
	struct auth_ident		*hs;
	struct rcfg			*r;
	int				 fd;

	(void)cb;
	if (c == NULL)
		return;
	fd = conn_find_fd(ri->remote_addr, ri->remote_port, ri->server_port);
	pthread_mutex_lock(&c->mu);
	c->fd = fd;
	if (fd < 0)
		c->state = CONN_CLOSING;	/* cannot write: ws.c returns 0 */
	pthread_mutex_unlock(&c->mu);
	if (fd < 0) {
		log_error("ip=%s: cannot find the socket of a new WebSocket",
		    ri->remote_addr);
		return;
	}
	if (outq_attach(c) == -1) {
		pthread_mutex_lock(&c->mu);
		c->state = CONN_CLOSING;
		c->fd = -1;
		pthread_mutex_unlock(&c->mu);
		conn_fd_release(fd);
		return;
	}
	conn_register(c);
	metrics_inc(M_CONN_ACCEPTED);
	if (server_draining()) {
		conn_close(c, 1001, "relay shutting down");
		return;
	}
	if ((hs = c->hs) != NULL) {
		c->hs = NULL;
		r = rcfg_get();
		presence_add(c, hs, c->instance, RELAY_PRESENCE_WAIT_MS);
		/* Welcome first: nothing may overtake it once indexed. */
		auth_welcome(c, hs);
		conn_authenticated(c, hs->uid, hs->name, hs->sid, c->instance,
		    hs->token_exp, hs->session_exp, (int)r->max_conn_per_user);
		rcfg_put(r);
		explicit_bzero(hs, sizeof(*hs));
		free(hs);
		clog_info(c, "connected (handshake auth)");
	} else {
		clog_debug(c, "connected; waiting for auth");
	}
}

static int
server_ws_data(struct mg_connection *mgc, int bits, char *data, size_t len,
    void *cb)
{
	struct conn	*c = mg_get_user_connection_data(mgc);

	(void)cb;
	if (c == NULL)
		return 0;
	return ws_frame(c, bits, data, len);
}

static void
server_ws_close(const struct mg_connection *mgc, void *cb)
{
	struct conn	*c = mg_get_user_connection_data(mgc);
	int		 code;

	(void)cb;
	if (c == NULL)
		return;
	mg_set_user_connection_data(mgc, NULL);
	pthread_mutex_lock(&c->mu);
	code = c->state < CONN_CLOSING ? 1006 : c->close_code;
	if (c->state < CONN_CLOSING)
		metrics_close(1006);	/* gone without a close frame */
	pthread_mutex_unlock(&c->mu);
	outq_detach(c);
	conn_unregister(c);
	if (c->presence)
		presence_remove(c);
	clog_info(c, "disconnected (%d)", code);
	conn_unref(c);
}

/* Any connection's end: frees a conn whose upgrade failed after connect. */
static void
server_conn_close(const struct mg_connection *mgc)
{
	struct conn	*c = mg_get_user_connection_data(mgc);

	if (c != NULL) {
		mg_set_user_connection_data(mgc, NULL);
		conn_unref(c);
	}
}

static int
server_log_message(const struct mg_connection *mgc, const char *msg)
{
	(void)mgc;
	log_debug("civetweb: %s", msg);
	return 1;
}

/* Start civetweb; see relay.h. */
int
server_start(void)
{
	struct mg_callbacks	cb;
	struct mg_init_data	init;
	struct mg_error_data	err;
	unsigned		code = 0;
	char			errtext[256] = "", threads[16];
	const char		*opts[] = {
		"listening_ports", rcfg_boot.listen,
		"num_threads", threads,
		"enable_websocket_ping_pong", "no",
		"websocket_timeout_ms", "3600000",
		"request_timeout_ms", "10000",
		"enable_keep_alive", "no",
		"tcp_nodelay", "1",
		"connection_queue", "128",
		"listen_backlog", "1024",
		"max_request_size", "16384",
		NULL
	};

	snprintf(threads, sizeof(threads), "%d",
	    rcfg_boot.max_connections + SERVER_SPARE_THREADS);
	memset(&cb, 0, sizeof(cb));
	cb.log_message = server_log_message;
	cb.connection_close = server_conn_close;
	memset(&init, 0, sizeof(init));
	init.callbacks = &cb;
	init.configuration_options = opts;
	memset(&err, 0, sizeof(err));
	err.code = &code;
	err.text = errtext;
	err.text_buffer_size = sizeof(errtext);
	mg_init_library(0);
	if ((srv_ctx = mg_start2(&init, &err)) == NULL) {
		log_error("cannot serve on %s: %s", rcfg_boot.listen,
		    errtext[0] ? errtext : "civetweb failed to start");
		return -1;
	}
	mg_set_request_handler(srv_ctx, "/healthz$", server_healthz, NULL);
	mg_set_request_handler(srv_ctx, "/metrics$", server_metrics, NULL);
	mg_set_websocket_handler_with_subprotocols(srv_ctx, "/ws$",
	    &srv_subprotocols, server_ws_connect, server_ws_ready,
	    server_ws_data, server_ws_close, NULL);
	return 0;
}

static void
server_close_1001(struct conn *c, void *arg)
{
	(void)arg;
	conn_close(c, 1001, "relay shutting down");
}

/* SIGTERM: 1001 to everyone, wait for them; see relay.h. */
void
server_drain(int64_t ms)
{
	int64_t	deadline = util_mono_ms() + ms;

	atomic_store(&srv_draining, 1);
	/* Again and again: an upgrade may be between its 101 and its ready
	 * handler now (conn_close is idempotent). */
	do {
		conn_foreach(server_close_1001, NULL);
		usleep(20 * 1000);
	} while (conn_count() > 0 && util_mono_ms() < deadline);
}

/*
 * civetweb's master thread polls the listening socket in 2 s slices and
 * checks the stop flag in between: connect to it now and then while
 * mg_stop waits, so that it notices at once.
 */
static void *
server_poke_main(void *arg)
{
	atomic_int		*done = arg;
	struct sockaddr_storage	 ss;
	socklen_t		 sl;
	char			 host[64];
	const char		*colon;
	int			 fd, port;

	memset(&ss, 0, sizeof(ss));
	colon = strrchr(rcfg_boot.listen, ':');
	port = atoi(colon ? colon + 1 : rcfg_boot.listen);
	host[0] = '\0';
	if (colon != NULL && (size_t)(colon - rcfg_boot.listen) < sizeof(host)) {
		memcpy(host, rcfg_boot.listen, (size_t)(colon - rcfg_boot.listen));
		host[colon - rcfg_boot.listen] = '\0';
	}
	if (host[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		char *rb = strchr(host, ']');

		if (rb != NULL)
			*rb = '\0';
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1 ||
		    IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr))
			s6->sin6_addr = in6addr_loopback;
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1 ||
		    s4->sin_addr.s_addr == htonl(INADDR_ANY))
			s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*s4);
	}
	while (!atomic_load(done)) {
		usleep(50 * 1000);
		if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			break;
		(void)connect(fd, (struct sockaddr *)&ss, sl);
		close(fd);
	}
	return NULL;
}

/* Is SIGTERM being handled (new connections refused)? */
int
server_draining(void)
{
	return atomic_load(&srv_draining);
}

/* Stop civetweb; see relay.h. */
void
server_stop(void)
{
	pthread_t	poke;
	atomic_int	done;
	int		poking;

	if (srv_ctx != NULL) {
		atomic_init(&done, 0);
		poking = pthread_create(&poke, NULL, server_poke_main, &done) == 0;
		mg_stop(srv_ctx);
		atomic_store(&done, 1);
		if (poking)
			pthread_join(poke, NULL);
		srv_ctx = NULL;
		mg_exit_library();
	}
}
