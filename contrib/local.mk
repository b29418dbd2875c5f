# contrib: rules for this directory (included from the top-level Makefile.am).
