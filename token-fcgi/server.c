/*
 * server.c: parley-token as a FastCGI server: the listening socket, worker
 * threads, signals and reload.
 *
 * The socket comes from the web server on standard input (mod_fcgid,
 * spawn-fcgi), from systemd (fd 3, LISTEN_PID/LISTEN_FDS), or from
 * --listen.  Each worker thread owns one FCGX_Request and one database
 * connection with its prepared statements.
 *
 * libfcgi's own accept loop cannot be woken: a thread blocked in accept(),
 * or reading the next request on a kept-alive connection, sleeps through
 * SIGTERM.  shutdown() of the listening socket would wake accept(), but the
 * socket may be shared (systemd keeps it across restarts, spawn-fcgi -F
 * gives it to several processes), so it must stay intact.  Instead every
 * thread waits in poll() on its socket and an eventfd that becomes readable
 * at shutdown, accepts itself (one thread at a time, the socket
 * non-blocking), and hands the connection to libfcgi through the
 * request's ipcFd, with a listening socket of -1 so libfcgi never accepts
 * on its own.  All signals are blocked in every thread; the main thread
 * sigwait()s: SIGTERM/SIGINT/SIGUSR1 stop, SIGHUP reloads.  Before the
 * workers start, one connection asks the database for synchronous_commit
 * (store_check_durable).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "log.h"
#include "token.h"

#define SERVER_IO_TIMEOUT_S	30		/* per read/write on a connection */
#define SERVER_DRAIN_MAX	(8u << 20)	/* unread body we still consume */
#define SERVER_JOIN_TIMEOUT_S	10

struct server {
	enum server_mode	 mode;
	int			 listen_fd;
	int			 wake_fd;	/* eventfd: readable = stop */
	pthread_mutex_t		 accept_lock;
	atomic_int		 stopping;
	atomic_int		 failed;
	const struct cfg_cli	*cli;
};

struct worker {
	struct server	*srv;
	int		 id;
	pthread_t	 tid;
	int		 started;
	FCGX_Request	 fcgx;
	struct db	 db;
	char		 cookies[COOKIE_MAX_HEADER + 2];	/* joined HTTP_COOKIE */
};

/* The unix socket we created, removed again at exit if it is still ours. */
static char	server_sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static dev_t	server_sock_dev;
static ino_t	server_sock_ino;

/* See token.h. */
int
server_is_listening(int fd)
{
	int		val = 0;
	socklen_t	len = sizeof(val);

	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &val, &len) < 0)
		return 0;
	return val != 0;
}

/* See token.h (sd_listen_fds(3) protocol, done by hand). */
int
server_systemd_fd(void)
{
	const char	*pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int64_t		 p, n;

	if (pid == NULL || fds == NULL)
		return -1;
	if (util_parse_int64(pid, &p) < 0 || p != (int64_t)getpid() ||
	    util_parse_int64(fds, &n) < 0 || n < 1)
		return -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (n > 1)
		log_warnx("systemd passed %lld sockets; using the first (fd 3)",
		    (long long)n);
	if (!server_is_listening(3)) {
		log_warnx("systemd fd 3 is not a listening socket; ignored");
		return -1;
	}
	(void)fcntl(3, F_SETFD, FD_CLOEXEC);
	return 3;
}

/* The gid for PARLEY_SOCKET_GROUP: a name or a number. */
static int
server_group(const char *name, gid_t *gid, char *err, size_t errlen)
{
	struct group	 gr, *res = NULL;
	char		 buf[4096];
	int64_t		 n;

	if (util_parse_int64(name, &n) == 0 && n >= 0 && n < INT_MAX) {
		*gid = (gid_t)n;
		return 0;
	}
	if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) != 0 || res == NULL) {
		snprintf(err, errlen, "socket_group: no group '%.64s'", name);
		return -1;
	}
	*gid = gr.gr_gid;
	return 0;
}

/* unix:PATH: replace a stale socket, bind with the mode and group. */
static int
server_listen_unix(const struct conf *c, const char *path, char *err,
    size_t errlen)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	mode_t			 old;
	gid_t			 gid = (gid_t)-1;
	int			 fd = -1, probe, r;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "listen: socket path too long");
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (c->socket_group != NULL &&
	    server_group(c->socket_group, &gid, err, errlen) < 0)
		return -1;

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "listen: %s exists and is not a "
			    "socket", path);
			return -1;
		}
		/* Someone still listening there?  Then it is not stale. */
		if ((probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			goto syserr;
		r = connect(probe, (struct sockaddr *)&sun, sizeof(sun));
		close(probe);
		if (r == 0) {
			snprintf(err, errlen, "listen: another process is "
			    "listening on %s", path);
			return -1;
		}
		if (unlink(path) < 0 && errno != ENOENT)
			goto syserr;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		goto syserr;
	/* Created private, then opened up to the configured mode. */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (r < 0)
		goto syserr;
	if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0)
		goto syserr;
	if (chmod(path, c->socket_mode) < 0)
		goto syserr;
	if (listen(fd, SOMAXCONN) < 0)
		goto syserr;
	if (stat(path, &st) == 0) {
		util_strlcpy(server_sock_path, path, sizeof(server_sock_path));
		server_sock_dev = st.st_dev;
		server_sock_ino = st.st_ino;
	}
	return fd;
syserr:
	snprintf(err, errlen, "listen: %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* HOST:PORT or [V6]:PORT. */
static int
server_listen_tcp(const char *spec, char *err, size_t errlen)
{
	struct addrinfo	 hints, *ai = NULL;
	char		 host[256];
	const char	*port, *colon;
	size_t		 hlen;
	int		 fd = -1, one = 1, r;

	colon = strrchr(spec, ':');
	if (colon == NULL || colon[1] == '\0') {
		snprintf(err, errlen, "listen: '%.64s' is not HOST:PORT", spec);
		return -1;
	}
	port = colon + 1;
	hlen = (size_t)(colon - spec);
	if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
		spec++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host)) {
		snprintf(err, errlen, "listen: host name too long");
		return -1;
	}
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((r = getaddrinfo(hlen ? host : NULL, port, &hints, &ai)) != 0) {
		snprintf(err, errlen, "listen: %.64s: %s", host, gai_strerror(r));
		return -1;
	}
	if ((fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
	    ai->ai_protocol)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
	    listen(fd, SOMAXCONN) < 0) {
		snprintf(err, errlen, "listen: %.64s:%s: %s", host, port,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	} else if (!(ai->ai_family == AF_INET &&
	    ((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr ==
	    htonl(INADDR_LOOPBACK)) &&
	    !(ai->ai_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(
	    &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr))) {
		log_warnx("listening on %s:%s, not a loopback address: only "
		    "the web server may reach a FastCGI socket", host, port);
	}
	freeaddrinfo(ai);
	return fd;
}

/* See token.h. */
int
server_listen(const struct conf *c, char *err, size_t errlen)
{
	if (strncmp(c->listen, "unix:", 5) == 0)
		return server_listen_unix(c, c->listen + 5, err, errlen);
	return server_listen_tcp(c->listen, err, errlen);
}

/* ------------------------------------------------------ FastCGI transport */

/*
 * A FastCGI parameter.  nginx before 1.23 passes a repeated request header
 * as repeated parameters, where FCGX_GetParam would see only the first:
 * repeated Cookie headers are joined with "; " (as RFC 9113 §8.2.3 joins
 * them), and an Origin given twice with different values counts as "null",
 * which never passes the Origin check.  Anything else: the first one.
 */
static const char *
server_fcgi_param(void *ctx, const char *name)
{
	struct worker	*w = ctx;
	char		**e;
	const char	*first = NULL, *v;
	size_t		 nlen = strlen(name), len = 0, vl;
	int		 count = 0, cookie = strcmp(name, "HTTP_COOKIE") == 0;

	if (!cookie && strcmp(name, "HTTP_ORIGIN") != 0)
		return FCGX_GetParam(name, w->fcgx.envp);
	for (e = w->fcgx.envp; e != NULL && *e != NULL; e++) {
		if (strncmp(*e, name, nlen) != 0 || (*e)[nlen] != '=')
			continue;
		v = *e + nlen + 1;
		if (count++ == 0) {
			first = v;
			if (cookie)
				len = util_strlcpy(w->cookies, v, sizeof(w->cookies));
			continue;
		}
		if (!cookie) {
			if (strcmp(first, v) != 0)
				return "null";
			continue;
		}
		/* Past COOKIE_MAX_HEADER the cookie parser refuses it anyway. */
		vl = strlen(v);
		if (len + 2 + vl >= sizeof(w->cookies)) {
			memset(w->cookies, 'x', sizeof(w->cookies) - 1);
			w->cookies[sizeof(w->cookies) - 1] = '\0';
			len = sizeof(w->cookies) - 1;
			continue;
		}
		memcpy(w->cookies + len, "; ", 2);
		memcpy(w->cookies + len + 2, v, vl + 1);
		len += 2 + vl;
	}
	if (cookie && count > 1)
		return w->cookies;
	return first;
}

static ssize_t
server_fcgi_read(void *ctx, void *buf, size_t n)
{
	struct worker	*w = ctx;
	int		 r;

	r = FCGX_GetStr(buf, n > INT_MAX ? INT_MAX : (int)n, w->fcgx.in);
	if (r <= 0 && FCGX_GetError(w->fcgx.in) != 0)
		return -1;
	return r;
}

static int
server_fcgi_write(void *ctx, const void *buf, size_t n)
{
	struct worker	*w = ctx;

	if (n > INT_MAX)
		return -1;
	return FCGX_PutStr(buf, (int)n, w->fcgx.out) == (int)n ? 0 : -1;
}

static const struct request_io server_fcgi_io = {
	server_fcgi_param, server_fcgi_read, server_fcgi_write
};

/* ------------------------------------------------------------- workers */

/* Stop everything because the listening socket broke. */
static void
server_fail(struct server *s)
{
	atomic_store(&s->failed, 1);
	kill(getpid(), SIGTERM);
}

/* Wait up to ms for shutdown; 1 if it began. */
static int
server_nap(struct server *s, int ms)
{
	struct pollfd	pfd = { s->wake_fd, POLLIN, 0 };

	return poll(&pfd, 1, ms) > 0;
}

/*
 * The next connection, or -1 at shutdown.  One thread at a time polls
 * and accepts, so a connection wakes one thread, not all of them.
 */
static int
server_accept(struct server *s)
{
	struct pollfd	pfd[2];
	struct timeval	tv = { SERVER_IO_TIMEOUT_S, 0 };
	int		fd = -1, n, one = 1;

	pthread_mutex_lock(&s->accept_lock);
	while (!atomic_load(&s->stopping)) {
		pfd[0].fd = s->listen_fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = s->wake_fd;
		pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		if ((n = poll(pfd, 2, -1)) < 0) {
			if (errno == EINTR)
				continue;
			log_warn("poll");
			server_fail(s);
			break;
		}
		if (pfd[1].revents != 0)
			break;
		if (pfd[0].revents & POLLNVAL) {
			log_warnx("the listening socket was closed");
			server_fail(s);
			break;
		}
		fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		switch (errno) {
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
		case EPERM:
		case ENETDOWN:
		case ENOPROTOOPT:
		case EHOSTDOWN:
		case ENONET:
		case EHOSTUNREACH:
		case EOPNOTSUPP:
		case ENETUNREACH:
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			log_warnx_ratelimited(10, "accept: %s", strerror(errno));
			server_nap(s, 100);
			continue;
		default:
			log_warn("accept");
			server_fail(s);
			break;
		}
		break;
	}
	pthread_mutex_unlock(&s->accept_lock);
	if (fd >= 0) {
		/* A stuck peer must not pin a worker (or shutdown) forever. */
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		/* Replies are one write each: no Nagle delay (fails on unix sockets). */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return fd;
}

/* Wait until a connection has input: 1, or 0 at shutdown (with no input). */
static int
server_wait(struct server *s, int fd)
{
	struct pollfd	pfd[2];

	for (;;) {
		pfd[0].fd = fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = s->wake_fd;
		pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 0;
		}
		if (pfd[0].revents != 0)
			return 1;
		return 0;
	}
}

/* One request on the worker's connection. */
static void
server_serve(struct worker *w)
{
	struct request	 req;
	struct conf	*c = conf_acquire();

	/* PARLEY_DB may have changed on SIGHUP: reconnect with the new one. */
	if (w->db.conninfo == NULL || strcmp(w->db.conninfo, c->db) != 0) {
		db_destroy(&w->db);
		if (db_init(&w->db, c->db, TOKEN_PROGNAME, store_stmts) < 0)
			log_warnx_ratelimited(10, "out of memory");
	}
	request_init(&req, &server_fcgi_io, w);
	req.conf = c;
	req.db = &w->db;
	if (w->db.conninfo == NULL)
		reply_unavailable(&req);
	else
		handler_dispatch(&req);
	/*
	 * A body nobody read may still be on its way from the client: send
	 * the reply before draining it.  Otherwise all that is left is the
	 * end of the input the web server sends with the request, and the
	 * reply leaves with the end of the response in one write (FCGX_Finish_r).
	 */
	if (!request_body_done(&req))
		FCGX_FFlush(w->fcgx.out);
	/* Keep a kept-alive connection in step, or give it up. */
	if (request_drain(&req, SERVER_DRAIN_MAX) < 0)
		w->fcgx.keepConnection = 0;
	conf_release(c);
}

static void *
server_worker(void *arg)
{
	struct worker	*w = arg;
	struct server	*s = w->srv;
	int		 fd;

	for (;;) {
		if (w->fcgx.ipcFd < 0) {
			if ((fd = server_accept(s)) < 0)
				break;
			w->fcgx.ipcFd = fd;
			/* Else FCGX_Accept_r's opening Finish would close it. */
			w->fcgx.keepConnection = 1;
		}
		/*
		 * Wait for the request (or the next one on a kept-alive
		 * connection) here, where shutdown can interrupt, and not
		 * in libfcgi's read.  At shutdown a request already waiting
		 * is still served, then the connection is closed.
		 */
		if (atomic_load(&s->stopping) || !server_wait(s, w->fcgx.ipcFd))
			break;
		if (FCGX_Accept_r(&w->fcgx) < 0) {
			/*
			 * The peer closed, or sent something libfcgi refused:
			 * it has closed the connection (and failed to accept
			 * on listen socket -1, as intended).
			 */
			if (w->fcgx.ipcFd >= 0) {
				close(w->fcgx.ipcFd);
				w->fcgx.ipcFd = -1;
			}
			continue;
		}
		server_serve(w);
		FCGX_Finish_r(&w->fcgx);
	}
	if (w->fcgx.ipcFd >= 0) {
		close(w->fcgx.ipcFd);
		w->fcgx.ipcFd = -1;
	}
	FCGX_Free(&w->fcgx, 0);
	db_destroy(&w->db);
	return NULL;
}

/* ------------------------------------------------------- signals, reload */

static int
server_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* SIGHUP: a new snapshot, or the old one and one line saying why. */
static void
server_reload(struct server *s)
{
	struct cfg_opt	*opts;
	struct conf	*c, *old;
	char		 err[512];

	if ((opts = conf_load_opts(s->cli, err, sizeof(err))) == NULL ||
	    (c = conf_build(opts, err, sizeof(err))) == NULL) {
		log_error("reload failed, keeping the previous configuration: %s",
		    err);
		return;
	}
	old = conf_acquire();
	if (!server_same(old->listen, c->listen) || old->threads != c->threads ||
	    old->socket_mode != c->socket_mode ||
	    !server_same(old->socket_group, c->socket_group) ||
	    old->session_cache_ms != c->session_cache_ms ||
	    old->session_cache_size != c->session_cache_size)
		log_warnx("listen, threads, socket_mode, socket_group, "
		    "session_cache and session_cache_size take effect only at "
		    "the next start");
	conf_publish(c);
	log_info("configuration reloaded: alg=%s kid=%s",
	    cfg_str(c->opts, "PARLEY_JWT_ALG"), jwtkey_kid(c->keys));
	conf_release(old);
}

static const char *
server_mode_name(enum server_mode m)
{
	switch (m) {
	case SERVER_STDIN:
		return "FastCGI on standard input";
	case SERVER_SYSTEMD:
		return "FastCGI on the systemd socket";
	default:
		return "FastCGI on";
	}
}

/* Remove the unix socket file if it is still the one we created. */
static void
server_unlink_sock(void)
{
	struct stat	st;

	if (server_sock_path[0] == '\0')
		return;
	if (stat(server_sock_path, &st) == 0 && st.st_dev == server_sock_dev &&
	    st.st_ino == server_sock_ino)
		(void)unlink(server_sock_path);
	server_sock_path[0] = '\0';
}

/* One line at exit on how the session cache did. */
static void
server_cache_report(void)
{
	struct scache_stats	st;

	if (!scache_enabled())
		return;
	scache_stats(&st);
	log_info("session cache: %llu hits, %llu misses, %llu stored, "
	    "%llu revoked, %llu flushes, %llu evicted, %zu entries",
	    (unsigned long long)st.hits, (unsigned long long)st.misses,
	    (unsigned long long)st.stores, (unsigned long long)st.revoked,
	    (unsigned long long)st.flushes, (unsigned long long)st.evictions,
	    st.entries);
}

/* Join every worker within the deadline; 0, or -1 if some are stuck. */
static int
server_join(struct worker *ws, int n)
{
	struct timespec	deadline;
	int		i, rc = 0;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += SERVER_JOIN_TIMEOUT_S;
	for (i = 0; i < n; i++) {
		if (!ws[i].started)
			continue;
		if (pthread_timedjoin_np(ws[i].tid, NULL, &deadline) != 0)
			rc = -1;
	}
	return rc;
}

/*
 * At startup, ask the database for synchronous_commit if it answers now
 * (store_check_durable logs the consequence of "off"); if it does not, the
 * first statement that succeeds asks instead.
 */
static void
server_check_durable(const char *conninfo)
{
	PGconn	*conn;
	char	 err[256];

	if ((conn = db_connect(conninfo, TOKEN_PROGNAME, err,
	    sizeof(err))) == NULL) {
		log_warnx("database unreachable at startup (%s): "
		    "synchronous_commit will be checked on the first "
		    "connection", err);
		return;
	}
	store_check_durable(conn);
	PQfinish(conn);
}

/* See token.h. */
int
server_run(enum server_mode mode, int listen_fd, const struct cfg_cli *cli)
{
	struct server	 s;
	struct worker	*ws = NULL;
	struct conf	*c = conf_acquire();
	sigset_t	 all, waitset;
	uint64_t	 one = 1;
	int		 i, sig, nthreads = c->threads, status = 1, fl;

	memset(&s, 0, sizeof(s));
	s.mode = mode;
	s.listen_fd = listen_fd;
	s.wake_fd = -1;
	s.cli = cli;
	pthread_mutex_init(&s.accept_lock, NULL);
	atomic_init(&s.stopping, 0);
	atomic_init(&s.failed, 0);

	/*
	 * Block everything asynchronous in this thread and, by inheritance,
	 * in every worker; this thread takes the signals with sigwait.
	 */
	signal(SIGPIPE, SIG_IGN);
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGABRT);
	sigdelset(&all, SIGTRAP);
	sigdelset(&all, SIGSYS);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	sigemptyset(&waitset);
	sigaddset(&waitset, SIGTERM);
	sigaddset(&waitset, SIGINT);
	sigaddset(&waitset, SIGUSR1);
	sigaddset(&waitset, SIGHUP);

	if (FCGX_Init() != 0) {
		log_error("cannot initialise libfcgi");
		goto out;
	}
	if ((s.wake_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
		log_warn("eventfd");
		goto out;
	}
	if ((fl = fcntl(listen_fd, F_GETFL)) < 0 ||
	    fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		log_warn("listening socket");
		goto out;
	}
	if ((ws = calloc((size_t)nthreads, sizeof(*ws))) == NULL) {
		log_error("out of memory");
		goto out;
	}
	/* Before the workers, which read it; its thread starts after them. */
	if (c->session_cache_ms > 0 &&
	    scache_init(c->session_cache_size, c->session_cache_ms) < 0) {
		log_error("cannot allocate the session cache (%zu entries)",
		    c->session_cache_size);
		goto out;
	}
	server_check_durable(c->db);
	for (i = 0; i < nthreads; i++) {
		ws[i].srv = &s;
		ws[i].id = i;
		FCGX_InitRequest(&ws[i].fcgx, -1, 0);
		if (db_init(&ws[i].db, c->db, TOKEN_PROGNAME, store_stmts) < 0 ||
		    pthread_create(&ws[i].tid, NULL, server_worker, &ws[i]) != 0) {
			log_error("cannot start worker thread %d", i);
			db_destroy(&ws[i].db);
			atomic_store(&s.failed, 1);
			goto stop;
		}
		ws[i].started = 1;
	}
	/* Without its thread the cache stays bypassed: slower, still right. */
	if (scache_enabled())
		(void)scache_start();
	log_info("parley-token %s: %s%s%s, %d threads, alg=%s kid=%s, "
	    "session cache %s", PACKAGE_VERSION, server_mode_name(mode),
	    mode == SERVER_LISTEN ? " " : "",
	    mode == SERVER_LISTEN ? c->listen : "", nthreads,
	    cfg_str(c->opts, "PARLEY_JWT_ALG"), jwtkey_kid(c->keys),
	    scache_enabled() ? cfg_str(c->opts, "PARLEY_SESSION_CACHE") : "off");
	conf_release(c);
	c = NULL;

	for (;;) {
		if (sigwait(&waitset, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			server_reload(&s);
			continue;
		}
		break;
	}
	if (atomic_load(&s.failed))
		log_error("stopping: the listening socket failed");
	else
		log_info("stopping on signal %d", sig);
stop:
	atomic_store(&s.stopping, 1);
	FCGX_ShutdownPending();
	if (write(s.wake_fd, &one, sizeof(one)) != sizeof(one))
		log_warn("eventfd write");
	/* The LISTEN thread first: requests still running bypass the cache. */
	scache_stop();
	if (server_join(ws, nthreads) < 0) {
		log_warnx("requests still running after %ds; exiting anyway",
		    SERVER_JOIN_TIMEOUT_S);
		server_unlink_sock();
		_exit(atomic_load(&s.failed) ? 1 : 0);
	}
	status = atomic_load(&s.failed) ? 1 : 0;
	server_cache_report();
out:
	scache_stop();
	scache_free();
	free(ws);
	if (s.wake_fd >= 0)
		close(s.wake_fd);
	if (mode == SERVER_LISTEN) {
		close(listen_fd);
		server_unlink_sock();
	}
	conf_release(c);
	conf_shutdown();
	pthread_mutex_destroy(&s.accept_lock);
	return status;
}
