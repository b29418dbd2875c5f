/*
 * load_util.c: small helpers shared by parley-load and raw-broadcast: the
 * monotonic clock, base64, the WebSocket accept key, loopback-only address
 * parsing, duration and number parsing, the open-files limit, and a fast
 * PRNG for mask keys.  No state, no logging.
 */
#include "config.h"

#include <sys/resource.h>

#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "load.h"

/* CLOCK_MONOTONIC in nanoseconds; see load.h. */
int64_t
load_now_ns(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
load_b64_any(const unsigned char *in, size_t n, char *out, size_t outlen,
    const char *alpha, int pad)
{
	size_t		i, o = 0;
	uint32_t	v;

	if (outlen < (n + 2) / 3 * 4 + 1)
		return -1;
	for (i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		out[o++] = alpha[v >> 6 & 63];
		out[o++] = alpha[v & 63];
	}
	if (n - i == 1) {
		v = (uint32_t)in[i] << 16;
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		if (pad) {
			out[o++] = '=';
			out[o++] = '=';
		}
	} else if (n - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		out[o++] = alpha[v >> 6 & 63];
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return (int)o;
}

/* Standard base64; see load.h. */
int
load_b64(const unsigned char *in, size_t n, char *out, size_t outlen)
{
	return load_b64_any(in, n, out, outlen,
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 1);
}

/* base64url without padding; see load.h. */
int
load_b64url(const unsigned char *in, size_t n, char *out, size_t outlen)
{
	return load_b64_any(in, n, out, outlen,
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 0);
}

/* Sec-WebSocket-Accept; see load.h. */
int
load_ws_accept(const char *key, size_t keylen, char out[29])
{
	static const char	 guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char		 h[SHA_DIGEST_LENGTH];
	char			 buf[128];

	if (keylen == 0 || keylen + sizeof(guid) > sizeof(buf))
		return -1;
	memcpy(buf, key, keylen);
	memcpy(buf + keylen, guid, sizeof(guid) - 1);
	SHA1((const unsigned char *)buf, keylen + sizeof(guid) - 1, h);
	return load_b64(h, sizeof(h), out, 29) == 28 ? 0 : -1;
}

/* Loopback check; see load.h. */
int
load_addr_is_loopback(const struct sockaddr_storage *ss)
{
	const struct sockaddr_in	*s4 = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6	*s6 = (const struct sockaddr_in6 *)ss;

	if (ss->ss_family == AF_INET)
		return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	if (ss->ss_family == AF_INET6) {
		if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) &&
		    s6->sin6_addr.s6_addr[12] == 127;
	}
	return 0;
}

/* Loopback-only address parsing; see load.h. */
int
load_parse_addr(const char *s, int default_port, struct sockaddr_storage *ss,
    socklen_t *len, char *err, size_t errlen)
{
	struct sockaddr_in	*s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*s6 = (struct sockaddr_in6 *)ss;
	char			 host[128];
	const char		*colon, *portstr = NULL;
	char			*end;
	long			 port = default_port;
	size_t			 hl;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		if ((colon = strchr(s, ']')) == NULL) {
			snprintf(err, errlen, "bad address '%s'", s);
			return -1;
		}
		hl = (size_t)(colon - s - 1);
		if (hl >= sizeof(host))
			goto bad;
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		if (colon[1] == ':')
			portstr = colon + 2;
		else if (colon[1] != '\0')
			goto bad;
	} else if ((colon = strchr(s, ':')) != NULL && strchr(colon + 1, ':') == NULL) {
		hl = (size_t)(colon - s);
		if (hl >= sizeof(host))
			goto bad;
		memcpy(host, s, hl);
		host[hl] = '\0';
		portstr = colon + 1;
	} else {
		if (strlen(s) >= sizeof(host))
			goto bad;
		strcpy(host, s);
	}
	if (portstr != NULL) {
		errno = 0;
		port = strtol(portstr, &end, 10);
		if (errno != 0 || end == portstr || *end != '\0' || port < 0 ||
		    port > 65535)
			goto bad;
	}
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*len = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*s6);
	} else {
		snprintf(err, errlen, "'%s' is not a numeric address (give "
		    "127.0.0.x, ::1 or localhost)", host);
		return -1;
	}
	if (!load_addr_is_loopback(ss)) {
		snprintf(err, errlen, "refusing %s: this tool only talks to "
		    "loopback addresses (127.0.0.0/8, ::1)", host);
		return -1;
	}
	return 0;
bad:
	snprintf(err, errlen, "bad address '%s' (want HOST:PORT)", s);
	return -1;
}

/* Address to text; see load.h. */
void
load_addr_str(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char	h[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, h, sizeof(h));
		snprintf(out, outlen, "[%s]:%u", h, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, h, sizeof(h));
		snprintf(out, outlen, "%s:%u", h, ntohs(s4->sin_port));
	}
}

/* Durations; see load.h. */
double
load_parse_seconds(const char *s)
{
	char	*end;
	double	 v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || v < 0)
		return -1;
	if (*end == '\0' || strcmp(end, "s") == 0)
		return v;
	if (strcmp(end, "ms") == 0)
		return v / 1000;
	if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		return v * 60;
	return -1;
}

/* Counts and rates; see load.h. */
double
load_parse_number(const char *s)
{
	char	*end;
	double	 v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || v < 0)
		return -1;
	if (*end == 'k' || *end == 'K') {
		v *= 1e3;
		end++;
	} else if (*end == 'm' || *end == 'M') {
		v *= 1e6;
		end++;
	}
	if (strcmp(end, "/s") == 0)
		end += 2;
	return *end == '\0' ? v : -1;
}

/* Open files; see load.h. */
long
load_raise_nofile(void)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_cur;
}

/* xorshift64*: mask keys need no secrecy in a load generator. */
uint32_t
load_rand32(uint64_t *state)
{
	uint64_t	x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}
