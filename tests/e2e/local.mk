# tests/e2e/: end-to-end tests (Node, TAP) against real services.
# One line per test or file; other parts append their own lines.

# The harness (tests/lib) and the npm manifest.
EXTRA_DIST += tests/lib/run-node-test
EXTRA_DIST += tests/lib/proc.mjs
EXTRA_DIST += tests/lib/pg.mjs
EXTRA_DIST += tests/package.json
EXTRA_DIST += tests/package-lock.json

# The schema: install/upgrade, login and sessions, messages, notifications.
TESTS += tests/e2e/schema.test.mjs
EXTRA_DIST += tests/e2e/schema.test.mjs

# The token service through real web servers (tests/lib/web.mjs starts nginx
# and Apache from contrib/nginx and contrib/apache).
EXTRA_DIST += tests/lib/web.mjs
TESTS += tests/e2e/token-cli.test.mjs
EXTRA_DIST += tests/e2e/token-cli.test.mjs
TESTS += tests/e2e/token-nginx.test.mjs
EXTRA_DIST += tests/e2e/token-nginx.test.mjs
TESTS += tests/e2e/token-apache.test.mjs
EXTRA_DIST += tests/e2e/token-apache.test.mjs
TESTS += tests/e2e/token-badinput.test.mjs
EXTRA_DIST += tests/e2e/token-badinput.test.mjs
TESTS += tests/e2e/token-cache.test.mjs
EXTRA_DIST += tests/e2e/token-cache.test.mjs

# The harness keeps its clusters, logs and the initdb template under
# tests/tmp of the build tree.
clean-local: clean-local-tests-tmp
clean-local-tests-tmp:
	-rm -rf tests/tmp
.PHONY: clean-local-tests-tmp

# The relay (parley-relay) against a private PostgreSQL with real WebSocket
# clients (npm ws); tokens minted with npm jose.
EXTRA_DIST += tests/e2e/relay-helpers.mjs
TESTS += tests/e2e/relay-auth.test.mjs
EXTRA_DIST += tests/e2e/relay-auth.test.mjs
TESTS += tests/e2e/relay-messages.test.mjs
EXTRA_DIST += tests/e2e/relay-messages.test.mjs
TESTS += tests/e2e/relay-frames.test.mjs
EXTRA_DIST += tests/e2e/relay-frames.test.mjs
TESTS += tests/e2e/relay-ops.test.mjs
EXTRA_DIST += tests/e2e/relay-ops.test.mjs
TESTS += tests/e2e/relay-cluster.test.mjs
EXTRA_DIST += tests/e2e/relay-cluster.test.mjs
TESTS += tests/e2e/relay-commands.test.mjs
EXTRA_DIST += tests/e2e/relay-commands.test.mjs
