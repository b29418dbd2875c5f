# tests/: unit tests (C, TAP) and end-to-end tests (Node, TAP) against real
# PostgreSQL, nginx, Apache and WebSocket clients.  Each part keeps its own
# fragment.
include $(srcdir)/tests/unit/local.mk
include $(srcdir)/tests/e2e/local.mk
include $(srcdir)/tests/client/local.mk
include $(srcdir)/tests/browser/local.mk
include $(srcdir)/tests/fuzz/local.mk
