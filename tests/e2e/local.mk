# tests/e2e/: end-to-end tests (Node, TAP) against real services.
