# tests/browser/: the demo chat (contrib/demo) on the client library
# (contrib/client) in headless Chromium (Debian's chromium, driven by npm
# playwright-core) against nginx, parley-token, parley-relay and a private
# PostgreSQL.  Each file skips when one of those is missing.
# Included from tests/local.mk.

EXTRA_DIST += tests/browser/browser-helpers.mjs
TESTS += tests/browser/chat.test.mjs
EXTRA_DIST += tests/browser/chat.test.mjs
TESTS += tests/browser/token-ttl.test.mjs
EXTRA_DIST += tests/browser/token-ttl.test.mjs

# Screenshots (of failures, and of the working chat) stay until make clean.
clean-local: clean-local-browser-artifacts
clean-local-browser-artifacts:
	-rm -rf tests/browser/artifacts
.PHONY: clean-local-browser-artifacts
