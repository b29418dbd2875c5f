# contrib/: what people deploy around the programs.  One file per line, so
# that every part can append its own.

# nginx: the deployable server block and the tests' nginx.conf template.
EXTRA_DIST += contrib/nginx/parley.conf
EXTRA_DIST += contrib/nginx/nginx-test.conf.in

# Apache httpd: mod_fcgid and plain CGI snippets, and the tests' template.
EXTRA_DIST += contrib/apache/parley-fcgid.conf
EXTRA_DIST += contrib/apache/parley-cgi.conf
EXTRA_DIST += contrib/apache/httpd-test.conf.in
include $(srcdir)/contrib/bench/local.mk

# Developer scripts: the README's run and test commands.
EXTRA_DIST += contrib/dev/install-deps
EXTRA_DIST += contrib/dev/build
EXTRA_DIST += contrib/dev/test
EXTRA_DIST += contrib/dev/run
EXTRA_DIST += contrib/dev/run.mjs
EXTRA_DIST += contrib/dev/lib.sh

# The browser client library and the demo chat page, installed for the web
# server to serve (contrib/nginx/parley.conf: / and /client/).
clientdir = $(pkgdatadir)/client
dist_client_DATA = contrib/client/parley.js contrib/client/parley.d.ts \
	contrib/client/package.json contrib/client/README.md
demodir = $(pkgdatadir)/demo
dist_demo_DATA = contrib/demo/index.html contrib/demo/demo.css contrib/demo/demo.js
