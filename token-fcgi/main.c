/*
 * main.c: the parley-token launcher.
 *
 * Reads the command line and the configuration, refuses to start with one
 * line on stderr when something is wrong, and picks the mode: --listen
 * (its own FastCGI server), a systemd socket, a listening socket on
 * standard input (mod_fcgid, spawn-fcgi), or else plain CGI.  Everything
 * else is in libtoken.a.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "token.h"

#define MAIN_SYNOPSIS	"[--config FILE] [--listen unix:PATH|HOST:PORT] [options]"

int
main(int argc, char **argv)
{
	struct cfg_cli	 cli;
	struct cfg_opt	*opts;
	struct conf	*conf;
	char		 err[512];
	int		 fd, is_cgi;

	log_init(TOKEN_PROGNAME, LOG_LEVEL_INFO);
	if (cfg_parse_args(conf_opts, argc, argv, &cli, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", TOKEN_PROGNAME, err);
		return 2;
	}
	switch (cli.action) {
	case CFG_HELP:
		cfg_print_help(stdout, TOKEN_PROGNAME, MAIN_SYNOPSIS, conf_opts);
		return 0;
	case CFG_VERSION:
		printf("%s %s\n", TOKEN_PROGNAME, PACKAGE_VERSION);
		return 0;
	default:
		break;
	}

	/* A web server's CGI request, if nothing says FastCGI. */
	is_cgi = cli.action == CFG_RUN && getenv("REQUEST_METHOD") != NULL &&
	    getenv("PARLEY_LISTEN") == NULL && !server_is_listening(0);

	if ((opts = conf_load_opts(&cli, err, sizeof(err))) == NULL)
		goto fail;
	if (cli.action == CFG_PRINT)
		cfg_print_config(stdout, opts);
	if ((conf = conf_build(opts, err, sizeof(err))) == NULL)
		goto fail;
	if (cli.action == CFG_CHECK)
		printf("ok\n");
	if (cli.action != CFG_RUN) {
		conf_release(conf);
		return 0;
	}
	log_level = conf->log_level;

	if (conf->listen != NULL) {
		if ((fd = server_listen(conf, err, sizeof(err))) < 0) {
			conf_release(conf);
			goto fail;
		}
		conf_publish(conf);
		return server_run(SERVER_LISTEN, fd, &cli);
	}
	if ((fd = server_systemd_fd()) >= 0) {
		conf_publish(conf);
		return server_run(SERVER_SYSTEMD, fd, &cli);
	}
	if (server_is_listening(0)) {
		conf_publish(conf);
		return server_run(SERVER_STDIN, 0, &cli);
	}
	if (getenv("REQUEST_METHOD") == NULL) {
		log_error("nothing to serve: standard input is not a FastCGI "
		    "socket, --listen is not set and REQUEST_METHOD (CGI) is "
		    "not set; see %s --help", TOKEN_PROGNAME);
		conf_release(conf);
		return 1;
	}
	fd = cgi_run(conf);
	conf_release(conf);
	return fd;
fail:
	log_error("%s", err);
	if (is_cgi)
		cgi_fail();
	return 1;
}
