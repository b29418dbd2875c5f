/*
 * parley-load.c: the benchmark load generator (BENCHMARKS.md, issues 3 and 6).
 * Options, the run's phases (connect, warm-up, measure, drain) driven from the
 * main thread, and the report: one line of key=value figures on stdout and a
 * human summary on stderr.  The work happens in the epoll workers
 * (load_run.c, load_conn.c); this file only starts, times and stops them.
 *
 * It talks to loopback addresses only and every run ends by itself: each
 * phase has a hard cap and a watchdog alarm ends the process past the sum.
 */
#include "config.h"

#include <sys/resource.h>
#include <sys/random.h>

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

static volatile sig_atomic_t	pl_interrupted;

static void
pl_usage(FILE *f)
{
	fprintf(f,
"usage: parley-load MODE --url ws://127.0.0.1:PORT[/PATH] --duration S [options]\n"
"\n"
"An open-loop WebSocket load generator for Parley's relay and its peers\n"
"(nchan, raw-broadcast).  Loopback targets only; every run stops by itself.\n"
"\n"
"Modes:\n"
"  idle N        open N connections (relay: authenticated, up to welcome),\n"
"                hold them for --duration answering pings\n"
"  fanout        --pubs P publishers send group_message to --group G at --rate\n"
"                (all publishers together); --subs S subscribers receive\n"
"  private       --pairs N: sender k sends private_message to receiver k;\n"
"                --rate is the aggregate; send->ack and send->receipt\n"
"  raw           fan-out through a plain broadcast server: subscribers at\n"
"                /sub/<channel>, publisher(s) at /pub/<channel> by WebSocket\n"
"                (or HTTP POST with --http-pub); the payload is the body alone\n"
"\n"
"Target:\n"
"  --url URL          ws://HOST:PORT[/PATH]; relay path default /ws\n"
"  --src A,B,...      bind connection i to source address i mod n (127.0.0.x;\n"
"                     ~28k connections per address pair)\n"
"  --pub-src A        fanout: bind the publishers to A instead (a proxy in\n"
"                     front can send them to another relay than the rest)\n"
"  --origin ORIGIN    send this Origin header\n"
"  --raw              idle mode against a raw server (/sub/<channel>)\n"
"  --channel NAME     raw: channel (default bench)\n"
"  --sub-prefix P     raw: subscriber path prefix (default /sub/)\n"
"  --pub-prefix P     raw: publisher path prefix (default /pub/)\n"
"  --http-pub         raw: publish with pipelined HTTP POSTs (nchan)\n"
"\n"
"Authentication (relay modes; PROTOCOL.md §2, token as a subprotocol):\n"
"  --key FILE         HS256 secret (the relay's key file) to mint tokens with\n"
"  --sessions FILE    'user_id sid [name]' lines, one per connection\n"
"  --tokens FILE      or pre-minted 'user_id sid token' lines\n"
"  --token-ttl S      minted token lifetime (default: the run + 10 min, >= 1 h)\n"
"  Line i serves connection i (wrapping): fanout = publishers first, then\n"
"  subscribers; private = lines 2k (sender) and 2k+1 (receiver) of pair k.\n"
"\n"
"Load:\n"
"  --subs S (100)  --pubs P (1)  --group G  --pairs N (100)\n"
"  --rate R           messages/s offered, e.g. 1000 or 10k\n"
"  --threads N        worker threads, one epoll loop each (default 1)\n"
"  --max-backlog B    per-connection unsent bytes before sends count as\n"
"                     unsent (default 8388608)\n"
"\n"
"Phases:\n"
"  --connect-rate R   new connections per second (default 2000)\n"
"  --max-pending N    handshakes in flight at once (default 256)\n"
"  --open-timeout S   a connection not open by then failed (default 10s)\n"
"  --warmup S (2s)  --duration S (required, <= 3600s)  --drain S (2s)\n"
"  --ready-file F     idle: write this file once every connection is settled\n"
"\n"
"Output: one line of key=value figures on stdout, a summary on stderr.\n"
"Latencies are from the scheduled send time carried in each 64-byte body\n"
"(CLOCK_MONOTONIC).  Exit 0 when the run completed, 1 on setup errors or\n"
"when nothing could be opened, 2 on usage errors.\n");
}

static void
pl_on_signal(int sig)
{
	(void)sig;
	pl_interrupted = 1;
}

static void
pl_on_alarm(int sig)
{
	static const char	msg[] =
	    "parley-load: watchdog: the run exceeded its hard cap\n";

	(void)sig;
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(3);
}

static double
pl_cpu(void)
{
	struct rusage	ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Sleep until `until` (monotonic ns) or an interruption. */
static void
pl_sleep_until(int64_t until)
{
	struct timespec	ts;
	int64_t		now, d;

	while (!pl_interrupted && (now = load_now_ns()) < until) {
		d = until - now;
		if (d > 20000000)
			d = 20000000;
		ts.tv_sec = 0;
		ts.tv_nsec = d;
		nanosleep(&ts, NULL);
	}
}

/* "ws://HOST:PORT/PATH" into o. */
static int
pl_parse_url(struct load_opts *o, const char *url, char *path, size_t pathlen,
    char *err, size_t errlen)
{
	char		 hp[128];
	const char	*p, *slash;
	size_t		 n;

	if (strncmp(url, "ws://", 5) != 0) {
		snprintf(err, errlen, "--url must start with ws:// (no TLS: "
		    "benchmarks run without it)");
		return -1;
	}
	p = url + 5;
	slash = strchr(p, '/');
	n = slash ? (size_t)(slash - p) : strlen(p);
	if (n == 0 || n >= sizeof(hp)) {
		snprintf(err, errlen, "bad --url '%s'", url);
		return -1;
	}
	memcpy(hp, p, n);
	hp[n] = '\0';
	if (load_parse_addr(hp, 80, &o->dst, &o->dstlen, err, errlen) < 0)
		return -1;
	snprintf(o->hosthdr, sizeof(o->hosthdr), "%s", hp);
	snprintf(path, pathlen, "%s", slash ? slash : "");
	return 0;
}

static int
pl_parse_src(struct load_opts *o, const char *list, char *err, size_t errlen)
{
	char	buf[4096], *t, *save;

	if (strlen(list) >= sizeof(buf)) {
		snprintf(err, errlen, "--src list too long");
		return -1;
	}
	strcpy(buf, list);
	o->nsrc = 0;
	for (t = strtok_r(buf, ",", &save); t != NULL;
	    t = strtok_r(NULL, ",", &save)) {
		if (o->nsrc == LOAD_MAX_SRC) {
			snprintf(err, errlen, "at most %d --src addresses",
			    LOAD_MAX_SRC);
			return -1;
		}
		if (load_parse_addr(t, 0, &o->src[o->nsrc], &o->srclen[o->nsrc],
		    err, errlen) < 0)
			return -1;
		o->nsrc++;
	}
	return 0;
}

/* Quantile in microseconds. */
static double
pl_us(const struct load_hist *h, double q)
{
	return (double)load_hist_quantile(h, q) / 1e3;
}

static void
pl_codes(const struct load_codes *t, char *out, size_t outlen)
{
	size_t	o = 0;
	int	i;

	out[0] = '\0';
	for (i = 0; i < t->n && o + 1 < outlen; i++)
		o += (size_t)snprintf(out + o, outlen - o, "%s%s:%llu",
		    i ? "," : "", t->name[i], (unsigned long long)t->count[i]);
	if (t->n == 0)
		snprintf(out, outlen, "-");
}

/*
 * Per receiver: how many that opened got fewer new messages in the window
 * than were sent to them, and the largest shortfall.  Reads the workers'
 * connections after they were joined.
 */
static void
pl_short(const struct load_opts *o, const struct load_ctl *ctl,
    const struct load_worker *w, uint64_t sent, uint64_t *nshort,
    uint64_t *worst)
{
	const struct load_conn	*c, *snd;
	uint64_t		 want, miss;
	int			 t, i;
	uint32_t		 si;

	*nshort = *worst = 0;
	for (t = 0; t < o->threads; t++)
		for (i = 0; i < w[t].nconns; i++) {
			c = &w[t].conns[i];
			if (!ctl->ready[c->idx] || (c->role != ROLE_SUB &&
			    c->role != ROLE_PRECV))
				continue;
			if (c->role == ROLE_PRECV) {
				si = c->idx - 1;	/* its sender */
				snd = &w[si % (uint32_t)o->threads].conns[si /
				    (uint32_t)o->threads];
				want = snd->sent;
			} else {
				want = sent;
			}
			miss = want > c->got ? want - c->got : 0;
			if (miss > 0)
				(*nshort)++;
			if (miss > *worst)
				*worst = miss;
		}
}

static const char *
pl_mode_name(enum load_mode m)
{
	return m == MODE_IDLE ? "idle" : m == MODE_FANOUT ? "fanout" :
	    m == MODE_PRIVATE ? "private" : "raw";
}

int
main(int argc, char **argv)
{
	enum {
		O_URL = 256, O_SRC, O_ORIGIN, O_RAW, O_CHANNEL, O_SUBP, O_PUBP,
		O_HTTPPUB, O_KEY, O_SESSIONS, O_TOKENS, O_TTL, O_SUBS, O_PUBS,
		O_GROUP, O_PAIRS, O_RATE, O_THREADS, O_BACKLOG, O_CRATE,
		O_PENDING, O_OTIMEOUT, O_WARMUP, O_DURATION, O_DRAIN, O_READY,
		O_PUBSRC
	};
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, O_URL },
		{ "src", required_argument, NULL, O_SRC },
		{ "pub-src", required_argument, NULL, O_PUBSRC },
		{ "origin", required_argument, NULL, O_ORIGIN },
		{ "raw", no_argument, NULL, O_RAW },
		{ "channel", required_argument, NULL, O_CHANNEL },
		{ "sub-prefix", required_argument, NULL, O_SUBP },
		{ "pub-prefix", required_argument, NULL, O_PUBP },
		{ "http-pub", no_argument, NULL, O_HTTPPUB },
		{ "key", required_argument, NULL, O_KEY },
		{ "sessions", required_argument, NULL, O_SESSIONS },
		{ "tokens", required_argument, NULL, O_TOKENS },
		{ "token-ttl", required_argument, NULL, O_TTL },
		{ "subs", required_argument, NULL, O_SUBS },
		{ "pubs", required_argument, NULL, O_PUBS },
		{ "group", required_argument, NULL, O_GROUP },
		{ "pairs", required_argument, NULL, O_PAIRS },
		{ "rate", required_argument, NULL, O_RATE },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "max-backlog", required_argument, NULL, O_BACKLOG },
		{ "connect-rate", required_argument, NULL, O_CRATE },
		{ "max-pending", required_argument, NULL, O_PENDING },
		{ "open-timeout", required_argument, NULL, O_OTIMEOUT },
		{ "warmup", required_argument, NULL, O_WARMUP },
		{ "duration", required_argument, NULL, O_DURATION },
		{ "drain", required_argument, NULL, O_DRAIN },
		{ "ready-file", required_argument, NULL, O_READY },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static struct load_opts	 o;
	static struct load_ctl	 ctl;
	static struct load_stats st;
	struct load_worker	*w = NULL;
	struct load_cred	*creds = NULL;
	const char		*url = NULL, *keyfile = NULL, *sessions = NULL;
	const char		*tokens = NULL, *channel = "bench";
	const char		*subp = "/sub/", *pubp = "/pub/", *ready_file = NULL;
	char			 err[512], path[256] = "", tmp[600];
	char			 fc[1024], cc[1024], ec[1024];
	double			 ttl = 0, v, cpu0 = 0, cpu1 = 0, wall, connect_s = 0;
	double			 connect_cap;
	int64_t			 t_begin, t_open, t_run0 = 0, t_run1 = 0;
	uint64_t		 expected = 0, lost = 0, receivers = 0;
	uint64_t		 short_n = 0, worst = 0;
	long			 nofile;
	int			 ch, i, done, rc = 1, started = 0;
	int			 failed_open = 0;
	unsigned char		 rnd[4];
	sigset_t		 block, old;
	struct sigaction	 sa;
	FILE			*f;
	char			*end;

	/* Defaults. */
	o.subs = 100;
	o.pubs = 1;
	o.pairs = 100;
	o.connect_rate = 2000;
	o.max_pending = 256;
	o.open_timeout = 10;
	o.warmup = 2;
	o.duration = -1;
	o.drain = 2;
	o.threads = 1;
	o.wmax = 8u << 20;
	o.group = 0;

	if (argc < 2) {
		pl_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		pl_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "idle") == 0)
		o.mode = MODE_IDLE;
	else if (strcmp(argv[1], "fanout") == 0)
		o.mode = MODE_FANOUT;
	else if (strcmp(argv[1], "private") == 0)
		o.mode = MODE_PRIVATE;
	else if (strcmp(argv[1], "raw") == 0)
		o.mode = MODE_RAW;
	else {
		fprintf(stderr, "parley-load: unknown mode '%s' (idle, fanout, "
		    "private, raw; --help)\n", argv[1]);
		return 2;
	}
	argc--;
	argv++;
	if (o.mode == MODE_IDLE && argc > 1 && argv[1][0] != '-') {
		o.nidle = (int)strtol(argv[1], &end, 10);
		if (*end != '\0' || o.nidle <= 0) {
			fprintf(stderr, "parley-load: idle N: N must be a positive "
			    "count\n");
			return 2;
		}
		argc--;
		argv++;
	}
	optind = 1;
	while ((ch = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		v = 0;
		switch (ch) {
		case O_URL: url = optarg; break;
		case O_SRC:
			if (pl_parse_src(&o, optarg, err, sizeof(err)) < 0)
				goto usage_err;
			break;
		case O_PUBSRC:
			if (load_parse_addr(optarg, 0, &o.pubsrc, &o.pubsrclen,
			    err, sizeof(err)) < 0)
				goto usage_err;
			break;
		case O_ORIGIN: o.origin = optarg; break;
		case O_RAW: o.raw = 1; break;
		case O_CHANNEL: channel = optarg; break;
		case O_SUBP: subp = optarg; break;
		case O_PUBP: pubp = optarg; break;
		case O_HTTPPUB: o.http_pub = 1; break;
		case O_KEY: keyfile = optarg; break;
		case O_SESSIONS: sessions = optarg; break;
		case O_TOKENS: tokens = optarg; break;
		case O_TTL:
			if ((ttl = load_parse_seconds(optarg)) <= 0)
				goto bad_value;
			break;
		case O_SUBS: case O_PUBS: case O_PAIRS: case O_THREADS:
		case O_PENDING: case O_BACKLOG:
			if ((v = load_parse_number(optarg)) < 1 || v > 1e9)
				goto bad_value;
			if (ch == O_SUBS) o.subs = (int)v;
			else if (ch == O_PUBS) o.pubs = (int)v;
			else if (ch == O_PAIRS) o.pairs = (int)v;
			else if (ch == O_THREADS) o.threads = (int)v;
			else if (ch == O_PENDING) o.max_pending = (int)v;
			else o.wmax = (size_t)v;
			break;
		case O_GROUP:
			errno = 0;
			o.group = strtoll(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || o.group <= 0)
				goto bad_value;
			break;
		case O_RATE: case O_CRATE:
			if ((v = load_parse_number(optarg)) <= 0 || v > 1e8)
				goto bad_value;
			if (ch == O_RATE) o.rate = v;
			else o.connect_rate = v;
			break;
		case O_OTIMEOUT: case O_WARMUP: case O_DURATION: case O_DRAIN:
			if ((v = load_parse_seconds(optarg)) < 0 ||
			    v > LOAD_MAX_DURATION)
				goto bad_value;
			if (ch == O_OTIMEOUT) o.open_timeout = v;
			else if (ch == O_WARMUP) o.warmup = v;
			else if (ch == O_DURATION) o.duration = v;
			else o.drain = v;
			break;
		case O_READY: ready_file = optarg; break;
		case 'v': o.verbose = 1; break;
		case 'h': pl_usage(stdout); return 0;
		default: return 2;
		}
		continue;
bad_value:
		fprintf(stderr, "parley-load: bad value '%s' for --%s (durations "
		    "<= %.0fs)\n", optarg, longopts[ch - O_URL].name,
		    LOAD_MAX_DURATION);
		return 2;
	}
	if (optind < argc) {
		snprintf(err, sizeof(err), "unexpected argument '%s'",
		    argv[optind]);
		goto usage_err;
	}

	/* Consistency. */
	if (o.mode == MODE_RAW)
		o.raw = 1;
	if (url == NULL) {
		snprintf(err, sizeof(err), "--url is required");
		goto usage_err;
	}
	if (o.duration <= 0) {
		snprintf(err, sizeof(err), "--duration is required (seconds, "
		    "at most %.0f)", LOAD_MAX_DURATION);
		goto usage_err;
	}
	if (o.mode == MODE_IDLE && o.nidle <= 0) {
		snprintf(err, sizeof(err), "idle needs a connection count: "
		    "parley-load idle N ...");
		goto usage_err;
	}
	if ((o.mode == MODE_FANOUT || o.mode == MODE_PRIVATE ||
	    o.mode == MODE_RAW) && o.rate <= 0) {
		snprintf(err, sizeof(err), "--rate is required for %s",
		    pl_mode_name(o.mode));
		goto usage_err;
	}
	if (o.mode == MODE_FANOUT && o.group <= 0) {
		snprintf(err, sizeof(err), "fanout needs --group G");
		goto usage_err;
	}
	if (o.http_pub && o.mode != MODE_RAW) {
		snprintf(err, sizeof(err), "--http-pub is for raw mode");
		goto usage_err;
	}
	if (o.threads > LOAD_MAX_THREADS) {
		snprintf(err, sizeof(err), "at most %d threads", LOAD_MAX_THREADS);
		goto usage_err;
	}
	if (pl_parse_url(&o, url, path, sizeof(path), err, sizeof(err)) < 0)
		goto usage_err;
	for (i = 0; i < o.nsrc; i++)
		if (o.src[i].ss_family != o.dst.ss_family) {
			snprintf(err, sizeof(err), "--src addresses must be of "
			    "the target's family");
			goto usage_err;
		}
	if (o.raw) {
		if (strlen(channel) == 0 || strlen(channel) > 64 ||
		    strspn(channel, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
		    "QRSTUVWXYZ0123456789_") != strlen(channel)) {
			snprintf(err, sizeof(err), "--channel: 1-64 word "
			    "characters");
			goto usage_err;
		}
		snprintf(o.sub_path, sizeof(o.sub_path), "%s%s", subp, channel);
		snprintf(o.pub_path, sizeof(o.pub_path), "%s%s", pubp, channel);
	} else {
		snprintf(o.path, sizeof(o.path), "%s", path[0] ? path : "/ws");
	}
	switch (o.mode) {
	case MODE_IDLE:
		o.total = o.nidle;
		o.nsources = 1;
		break;
	case MODE_FANOUT:
	case MODE_RAW:
		o.total = o.subs + o.pubs;
		o.nsources = o.pubs;
		break;
	case MODE_PRIVATE:
		o.total = 2 * o.pairs;
		o.nsources = o.pairs;
		break;
	}
	if (o.nsources > 99999) {
		snprintf(err, sizeof(err), "at most 99999 publishers or pairs");
		goto usage_err;
	}
	if (o.threads > o.total)
		o.threads = o.total;

	/* Credentials. */
	if (!o.raw) {
		if ((keyfile == NULL) == (tokens == NULL) ||
		    (keyfile != NULL && sessions == NULL) ||
		    (tokens != NULL && sessions != NULL)) {
			snprintf(err, sizeof(err), "relay modes need --key FILE "
			    "--sessions FILE, or --tokens FILE");
			goto usage_err;
		}
		if (ttl <= 0) {
			ttl = o.total / o.connect_rate + o.open_timeout +
			    o.warmup + o.duration + o.drain + 600;
			if (ttl < 3600)
				ttl = 3600;
		}
		if ((creds = load_auth_load(keyfile ? sessions : tokens, keyfile,
		    (int64_t)ttl, &o.ncreds, err, sizeof(err))) == NULL) {
			fprintf(stderr, "parley-load: %s\n", err);
			return 1;
		}
		o.creds = creds;
		if (o.mode == MODE_PRIVATE && o.ncreds < (size_t)o.total) {
			fprintf(stderr, "parley-load: private needs %d session "
			    "lines (2 per pair, distinct users), got %zu\n",
			    o.total, o.ncreds);
			goto out;
		}
		if (o.ncreds < (size_t)o.total && (o.total + o.ncreds - 1) /
		    o.ncreds > 8)
			fprintf(stderr, "parley-load: warning: %d connections "
			    "share %zu users (> 8 per user: the relay's per-user "
			    "cap will replace some)\n", o.total, o.ncreds);
	} else if (keyfile || sessions || tokens) {
		snprintf(err, sizeof(err), "raw targets take no credentials");
		goto usage_err;
	}
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		memset(rnd, 0x5a, sizeof(rnd));
	snprintf(o.nonce, sizeof(o.nonce), "%02x%02x%02x%02x", rnd[0], rnd[1],
	    rnd[2], rnd[3]);

	nofile = load_raise_nofile();
	if ((long)o.total + 64 > nofile) {
		fprintf(stderr, "parley-load: %d connections need %d open files; "
		    "the limit is %ld (run several processes)\n", o.total,
		    o.total + 64, nofile);
		goto out;
	}

	/* Workers. */
	if ((ctl.ready = calloc((size_t)o.total, 1)) == NULL ||
	    (ctl.src_ok = calloc((size_t)o.nsources, 1)) == NULL ||
	    (w = calloc((size_t)o.threads, sizeof(*w))) == NULL) {
		fprintf(stderr, "parley-load: out of memory\n");
		goto out;
	}
	atomic_init(&ctl.phase, PH_CONNECT);
	for (i = 0; i < o.threads; i++)
		if (load_conn_worker_init(&w[i], &o, &ctl, i, err,
		    sizeof(err)) < 0) {
			fprintf(stderr, "parley-load: %s\n", err);
			goto out;
		}

	/* Signals: workers block them, main handles them. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = pl_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = pl_on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	connect_cap = o.total / o.connect_rate + o.open_timeout + 30;
	if (connect_cap > LOAD_MAX_DURATION)
		connect_cap = LOAD_MAX_DURATION;
	alarm((unsigned)(connect_cap + o.warmup + o.duration + o.drain + 60));

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (i = 0; i < o.threads; i++) {
		if ((errno = pthread_create(&w[i].th, NULL, load_run_thread,
		    &w[i])) != 0) {
			fprintf(stderr, "parley-load: thread: %s\n",
			    strerror(errno));
			atomic_store(&ctl.phase, PH_STOP);
			break;
		}
		started++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (started < o.threads)
		goto join;

	/* Connect phase: until every worker has settled all its connections. */
	t_begin = load_now_ns();
	for (;;) {
		for (done = 0, i = 0; i < o.threads; i++)
			done += atomic_load_explicit(&w[i].connect_done,
			    memory_order_acquire);
		if (done == o.threads || pl_interrupted ||
		    load_now_ns() - t_begin > (int64_t)(connect_cap * 1e9))
			break;
		pl_sleep_until(load_now_ns() + 10000000);
	}
	t_open = load_now_ns();
	connect_s = (double)(t_open - t_begin) / 1e9;
	if (done < o.threads) {
		fprintf(stderr, "parley-load: %s during the connect phase\n",
		    pl_interrupted ? "interrupted" : "connect phase cap reached");
		atomic_store(&ctl.phase, PH_STOP);
		t_run0 = t_run1 = load_now_ns();
		failed_open = 1;
		goto join;
	}
	for (i = 0; i < o.threads; i++) {
		st.opened += w[i].st.opened;
		st.failed += w[i].st.failed;
	}
	if (o.verbose)
		fprintf(stderr, "parley-load: %llu opened, %llu failed in %.2f s\n",
		    (unsigned long long)st.opened, (unsigned long long)st.failed,
		    connect_s);

	/* Which sources may send: fan-out publishers that opened; private
	 * senders whose sender and receiver both opened. */
	receivers = 0;
	for (i = 0; i < o.nsources; i++)
		ctl.src_ok[i] = o.mode == MODE_PRIVATE ?
		    ctl.ready[2 * i] && ctl.ready[2 * i + 1] :
		    o.mode == MODE_IDLE ? 0 : ctl.ready[i];
	if (o.mode == MODE_FANOUT || o.mode == MODE_RAW)
		for (i = o.pubs; i < o.total; i++)
			receivers += ctl.ready[i];
	else if (o.mode == MODE_PRIVATE)
		for (i = 0; i < o.nsources; i++)
			receivers += ctl.src_ok[i];
	if (o.mode == MODE_FANOUT || o.mode == MODE_RAW)
		for (done = 0, i = 0; i < o.pubs; i++)
			done += ctl.src_ok[i];
	else
		done = 1;
	if (st.opened == 0 || (o.mode != MODE_IDLE && receivers == 0) ||
	    done == 0) {
		fprintf(stderr, "parley-load: nothing to measure: %llu of %d "
		    "connections opened%s\n", (unsigned long long)st.opened,
		    o.total, done == 0 ? ", no publisher" : "");
		atomic_store(&ctl.phase, PH_STOP);
		t_run0 = t_run1 = load_now_ns();
		failed_open = 1;
		goto join;
	}

	if (o.mode == MODE_IDLE && ready_file != NULL) {
		snprintf(tmp, sizeof(tmp), "%s.tmp", ready_file);
		if ((f = fopen(tmp, "w")) != NULL) {
			fprintf(f, "opened=%llu failed=%llu\n",
			    (unsigned long long)st.opened,
			    (unsigned long long)st.failed);
			if (fclose(f) != 0 || rename(tmp, ready_file) != 0)
				fprintf(stderr, "parley-load: %s: %s\n",
				    ready_file, strerror(errno));
		}
	}
	if (o.mode == MODE_IDLE)
		fprintf(stderr, "parley-load: ready opened=%llu failed=%llu\n",
		    (unsigned long long)st.opened, (unsigned long long)st.failed);

	/* Run: publish the times, then the phase (release). */
	ctl.t0 = load_now_ns() + 20000000;
	if (o.mode == MODE_IDLE) {
		ctl.t_meas0 = ctl.t0;
		ctl.t_meas1 = ctl.t_send_end = ctl.t0 + (int64_t)(o.duration * 1e9);
	} else {
		ctl.t_meas0 = ctl.t0 + (int64_t)(o.warmup * 1e9);
		ctl.t_meas1 = ctl.t_send_end = ctl.t_meas0 +
		    (int64_t)(o.duration * 1e9);
	}
	cpu0 = pl_cpu();
	t_run0 = load_now_ns();
	atomic_store_explicit(&ctl.phase, PH_RUN, memory_order_release);
	pl_sleep_until(ctl.t_send_end + (o.mode == MODE_IDLE ? 0 :
	    (int64_t)(o.drain * 1e9)));
	t_run1 = load_now_ns();
	cpu1 = pl_cpu();
	atomic_store_explicit(&ctl.phase, PH_STOP, memory_order_release);

join:
	atomic_store(&ctl.phase, PH_STOP);
	for (i = 0; i < started; i++)
		pthread_join(w[i].th, NULL);
	alarm(0);
	if (started < o.threads || t_run0 == 0)
		goto out;

	/* Report. */
	memset(&st, 0, sizeof(st));
	load_hist_init(&st.lat);
	load_hist_init(&st.ack);
	load_hist_init(&st.open);
	load_hist_init(&st.lag);
	for (i = 0; i < o.threads; i++)
		load_run_merge(&st, &w[i].st);
	pl_codes(&st.fail_codes, fc, sizeof(fc));
	pl_codes(&st.closes, cc, sizeof(cc));
	pl_codes(&st.errors, ec, sizeof(ec));
	wall = (double)(t_run1 - t_run0) / 1e9;

	if (o.mode == MODE_IDLE) {
		printf("mode=idle%s target=%s conns=%d opened=%llu failed=%llu "
		    "connect_s=%.3f open_p50_ms=%.3f open_p99_ms=%.3f "
		    "open_max_ms=%.3f held_s=%.1f dropped=%llu still_open=%llu "
		    "pings=%llu gen_cpu_s=%.3f fail=%s closes=%s errors=%s "
		    "interrupted=%d\n",
		    o.raw ? "_raw" : "", o.hosthdr, o.total,
		    (unsigned long long)st.opened, (unsigned long long)st.failed,
		    connect_s, pl_us(&st.open, 0.5) / 1e3,
		    pl_us(&st.open, 0.99) / 1e3, pl_us(&st.open, 1) / 1e3, wall,
		    (unsigned long long)st.dropped,
		    (unsigned long long)(st.opened - st.dropped),
		    (unsigned long long)st.pings, cpu1 - cpu0, fc, cc, ec,
		    (int)pl_interrupted);
		fprintf(stderr,
		    "idle: %llu/%d connections opened in %.2f s (%llu failed: %s)\n"
		    "  time to open: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n"
		    "  held %.1f s: %llu dropped (%s), %llu pings answered, "
		    "generator CPU %.2f s\n",
		    (unsigned long long)st.opened, o.total, connect_s,
		    (unsigned long long)st.failed, fc, pl_us(&st.open, 0.5) / 1e3,
		    pl_us(&st.open, 0.99) / 1e3, pl_us(&st.open, 1) / 1e3, wall,
		    (unsigned long long)st.dropped, cc,
		    (unsigned long long)st.pings, cpu1 - cpu0);
		rc = failed_open;
		goto out;
	}

	expected = o.mode == MODE_PRIVATE ? st.sent : st.sent * receivers;
	lost = expected > st.delivered ? expected - st.delivered : 0;
	pl_short(&o, &ctl, w, st.sent, &short_n, &worst);
	printf("mode=%s target=%s threads=%d subs=%d pubs=%d pairs=%d "
	    "receivers=%llu rate=%.0f warmup_s=%.1f duration_s=%.1f drain_s=%.1f "
	    "sent=%llu unsent=%llu expected=%llu delivered=%llu lost=%llu "
	    "dup=%llu ooo=%llu old=%llu loss_pct=%.4f rate_achieved=%.1f "
	    "recv_short=%llu recv_worst_lost=%llu "
	    "deliveries_per_s=%.0f lat_p50_us=%.1f lat_p90_us=%.1f "
	    "lat_p99_us=%.1f lat_p999_us=%.1f lat_max_us=%.1f lat_mean_us=%.1f "
	    "acks=%llu ack_p50_us=%.1f ack_p99_us=%.1f ack_p999_us=%.1f "
	    "ack_max_us=%.1f send_lag_p99_us=%.1f send_lag_max_us=%.1f "
	    "late_sends=%llu opened=%llu failed=%llu dropped=%llu pub_rx=%llu "
	    "other_msgs=%llu bad=%llu gen_reads=%llu gen_writes=%llu "
	    "gen_cpu_s=%.3f gen_cpu_util=%.3f gen_ns_per_delivery=%.0f "
	    "fail=%s closes=%s errors=%s interrupted=%d\n",
	    pl_mode_name(o.mode), o.hosthdr, o.threads,
	    o.mode == MODE_PRIVATE ? 0 : o.subs,
	    o.mode == MODE_PRIVATE ? 0 : o.pubs,
	    o.mode == MODE_PRIVATE ? o.pairs : 0,
	    (unsigned long long)receivers, o.rate, o.warmup, o.duration,
	    o.drain, (unsigned long long)st.sent,
	    (unsigned long long)st.unsent, (unsigned long long)expected,
	    (unsigned long long)st.delivered, (unsigned long long)lost,
	    (unsigned long long)st.dup, (unsigned long long)st.ooo,
	    (unsigned long long)st.old,
	    expected ? 100.0 * (double)lost / (double)expected : 0.0,
	    (double)st.sent / o.duration, (unsigned long long)short_n,
	    (unsigned long long)worst, (double)st.delivered / o.duration,
	    pl_us(&st.lat, 0.5), pl_us(&st.lat, 0.9), pl_us(&st.lat, 0.99),
	    pl_us(&st.lat, 0.999), pl_us(&st.lat, 1),
	    st.lat.count ? st.lat.sum / (double)st.lat.count / 1e3 : 0.0,
	    (unsigned long long)st.acks, pl_us(&st.ack, 0.5),
	    pl_us(&st.ack, 0.99), pl_us(&st.ack, 0.999), pl_us(&st.ack, 1),
	    pl_us(&st.lag, 0.99), pl_us(&st.lag, 1),
	    (unsigned long long)st.lag_late, (unsigned long long)st.opened,
	    (unsigned long long)st.failed, (unsigned long long)st.dropped,
	    (unsigned long long)st.pub_rx, (unsigned long long)st.other_msgs,
	    (unsigned long long)(st.bad_body + st.bad_msg),
	    (unsigned long long)st.reads, (unsigned long long)st.writes,
	    cpu1 - cpu0, wall > 0 ? (cpu1 - cpu0) / wall : 0.0,
	    st.delivered_total ? (cpu1 - cpu0) * 1e9 /
	    (double)st.delivered_total : 0.0, fc, cc, ec,
	    (int)pl_interrupted);
	fprintf(stderr,
	    "%s: %llu receivers, offered %.0f msg/s for %.1f s (+%.1f s warm-up, "
	    "%.1f s drain)\n"
	    "  sent %llu (%llu unsent), delivered %llu of %llu expected: "
	    "lost %llu (%.4f %%), dup %llu, out of order %llu\n"
	    "  receivers missing messages: %llu (worst: %llu lost)\n"
	    "  achieved %.1f msg/s, %.0f deliveries/s\n"
	    "  latency send->receipt: p50 %.1f us, p90 %.1f, p99 %.1f, "
	    "p99.9 %.1f, max %.1f\n"
	    "  acks %llu: p50 %.1f us, p99 %.1f, p99.9 %.1f, max %.1f\n"
	    "  generator: send lag p99 %.1f us (max %.1f), %llu sends > 1 ms "
	    "late, CPU %.2f s (%.0f %% of one core, %.2f us per delivery)\n"
	    "  connections: %llu opened, %llu failed (%s), %llu dropped (%s); "
	    "errors: %s\n",
	    pl_mode_name(o.mode), (unsigned long long)receivers, o.rate,
	    o.duration, o.warmup, o.drain, (unsigned long long)st.sent,
	    (unsigned long long)st.unsent, (unsigned long long)st.delivered,
	    (unsigned long long)expected, (unsigned long long)lost,
	    expected ? 100.0 * (double)lost / (double)expected : 0.0,
	    (unsigned long long)st.dup, (unsigned long long)st.ooo,
	    (unsigned long long)short_n, (unsigned long long)worst,
	    (double)st.sent / o.duration, (double)st.delivered / o.duration,
	    pl_us(&st.lat, 0.5), pl_us(&st.lat, 0.9), pl_us(&st.lat, 0.99),
	    pl_us(&st.lat, 0.999), pl_us(&st.lat, 1),
	    (unsigned long long)st.acks, pl_us(&st.ack, 0.5),
	    pl_us(&st.ack, 0.99), pl_us(&st.ack, 0.999), pl_us(&st.ack, 1),
	    pl_us(&st.lag, 0.99), pl_us(&st.lag, 1),
	    (unsigned long long)st.lag_late, cpu1 - cpu0,
	    wall > 0 ? 100 * (cpu1 - cpu0) / wall : 0.0,
	    st.delivered_total ? (cpu1 - cpu0) * 1e6 /
	    (double)st.delivered_total : 0.0,
	    (unsigned long long)st.opened, (unsigned long long)st.failed, fc,
	    (unsigned long long)st.dropped, cc, ec);
	rc = failed_open;
	goto out;

usage_err:
	fprintf(stderr, "parley-load: %s (--help)\n", err);
	rc = 2;
out:
	if (w != NULL)
		for (i = 0; i < o.threads; i++)
			load_conn_worker_free(&w[i]);
	free(w);
	free(ctl.ready);
	free(ctl.src_ok);
	load_auth_free(creds, o.ncreds);
	return rc;
}
