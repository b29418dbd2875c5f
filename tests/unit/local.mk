# tests/unit/: C unit tests of common/ (TAP).
