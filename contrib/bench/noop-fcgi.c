/*
 * noop-fcgi: the FastCGI path's ceiling for the token benchmark.
 *
 * A libfcgi responder shaped like parley-token's server mode (N threads
 * accepting on one socket) that answers every request with a fixed small
 * JSON body and does nothing else: no database, no signing.  What nginx plus
 * this process achieve is the most parley-token could achieve on the same
 * configuration.
 *
 *	noop-fcgi unix:/path/to.sock [threads]
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcgiapp.h>

static int	listen_fd;

static void *
noop_worker(void *arg)
{
	FCGX_Request	req;

	(void)arg;
	if (FCGX_InitRequest(&req, listen_fd, 0) != 0)
		return NULL;
	while (FCGX_Accept_r(&req) >= 0) {
		FCGX_PutS("Status: 200 OK\r\n"
		    "Content-Type: application/json\r\n"
		    "Cache-Control: no-store\r\n\r\n"
		    "{\"ok\":true}", req.out);
		FCGX_Finish_r(&req);
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	pthread_t	*tids;
	int		 i, n;

	if (argc < 2 || strncmp(argv[1], "unix:", 5) != 0) {
		fprintf(stderr, "usage: noop-fcgi unix:PATH [threads]\n");
		return 2;
	}
	n = argc > 2 ? atoi(argv[2]) : 16;
	if (n < 1 || n > 1024)
		n = 16;
	if (FCGX_Init() != 0)
		return 1;
	unlink(argv[1] + 5);
	if ((listen_fd = FCGX_OpenSocket(argv[1] + 5, 1024)) < 0) {
		fprintf(stderr, "noop-fcgi: cannot listen on %s\n", argv[1] + 5);
		return 1;
	}
	chmod(argv[1] + 5, 0666);
	if ((tids = calloc((size_t)n, sizeof(*tids))) == NULL)
		return 1;
	for (i = 0; i < n; i++)
		if (pthread_create(&tids[i], NULL, noop_worker, NULL) != 0)
			return 1;
	for (i = 0; i < n; i++)
		pthread_join(tids[i], NULL);
	return 0;
}
