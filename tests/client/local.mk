# tests/client/: unit tests of the browser client library (contrib/client)
# against a fake WebSocket, clock and storage, in node's test runner (TAP
# through tests/lib/run-node-test).  No services, no npm packages.
# Included from tests/local.mk.

EXTRA_DIST += tests/client/fakes.mjs
TESTS += tests/client/reconnect.test.mjs
EXTRA_DIST += tests/client/reconnect.test.mjs
TESTS += tests/client/token.test.mjs
EXTRA_DIST += tests/client/token.test.mjs
TESTS += tests/client/outbox.test.mjs
EXTRA_DIST += tests/client/outbox.test.mjs
TESTS += tests/client/sync.test.mjs
EXTRA_DIST += tests/client/sync.test.mjs
TESTS += tests/client/instance.test.mjs
EXTRA_DIST += tests/client/instance.test.mjs
TESTS += tests/client/requests.test.mjs
EXTRA_DIST += tests/client/requests.test.mjs
