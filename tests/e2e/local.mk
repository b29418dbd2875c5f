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
TESTS += tests/e2e/relay-flow.test.mjs
EXTRA_DIST += tests/e2e/relay-flow.test.mjs
# What a catch-up after a lost LISTEN connection delivers: to each
# connection exactly what it was not sent (relay/deliver.c).
TESTS += tests/e2e/relay-catchup.test.mjs
EXTRA_DIST += tests/e2e/relay-catchup.test.mjs
# The presence sweep of dead relays and its bound (relay/presence.c).
TESTS += tests/e2e/relay-presence-sweep.test.mjs
EXTRA_DIST += tests/e2e/relay-presence-sweep.test.mjs
# The relay behind nginx as deployed (contrib/nginx/parley.conf via
# tests/lib/web.mjs), with parley-token behind the same nginx.
TESTS += tests/e2e/relay-nginx.test.mjs
EXTRA_DIST += tests/e2e/relay-nginx.test.mjs

# Hostile input (issue 7): RFC 6455 conformance through a raw-socket client
# of our own (tests/lib/wsraw.mjs; docs/conformance.md is made from the
# results a run writes to tests/conformance-*.{json,md}), adversarial
# suites against both programs (results in tests/adversarial-*.json), and
# the log-hygiene check over every component's logs.
EXTRA_DIST += tests/lib/wsraw.mjs
EXTRA_DIST += tests/e2e/adversarial-helpers.mjs
EXTRA_DIST += docs/conformance.md
TESTS += tests/e2e/conformance.test.mjs
EXTRA_DIST += tests/e2e/conformance.test.mjs
TESTS += tests/e2e/adversarial-relay-auth.test.mjs
EXTRA_DIST += tests/e2e/adversarial-relay-auth.test.mjs
TESTS += tests/e2e/adversarial-relay-flood.test.mjs
EXTRA_DIST += tests/e2e/adversarial-relay-flood.test.mjs
TESTS += tests/e2e/adversarial-token.test.mjs
EXTRA_DIST += tests/e2e/adversarial-token.test.mjs
TESTS += tests/e2e/log-hygiene.test.mjs
EXTRA_DIST += tests/e2e/log-hygiene.test.mjs
CLEANFILES += tests/conformance-results.json tests/conformance-table.md
CLEANFILES += tests/adversarial-relay-auth.json tests/adversarial-relay-flood.json
CLEANFILES += tests/adversarial-token.json

# Issue 4: many relays, real faults, nothing lost.  Durations on 2 cores:
# fault-db ~50 s, fault-relay ~40 s, chaos ~2 min (PARLEY_CHAOS_SECONDS=N
# for a longer soak), longlived ~75 s (PARLEY_LONG_TESTS=1: 6.5 min).
EXTRA_DIST += tests/e2e/fault-helpers.mjs
TESTS += tests/e2e/fault-db.test.mjs
EXTRA_DIST += tests/e2e/fault-db.test.mjs
TESTS += tests/e2e/fault-relay.test.mjs
EXTRA_DIST += tests/e2e/fault-relay.test.mjs
TESTS += tests/e2e/chaos.test.mjs
EXTRA_DIST += tests/e2e/chaos.test.mjs
TESTS += tests/e2e/longlived.test.mjs
EXTRA_DIST += tests/e2e/longlived.test.mjs
