# schema/: the psql scripts that install and upgrade schema parley, installed
# under $(pkgdatadir)/schema (upgrade/ kept as a subdirectory, which
# install.sql includes with \ir).

schemadir = $(pkgdatadir)/schema
dist_schema_DATA = \
	schema/install.sql \
	schema/functions.sql \
	schema/demo.sql \
	schema/README.md

schemaupgradedir = $(pkgdatadir)/schema/upgrade
dist_schemaupgrade_DATA = \
	schema/upgrade/apply.psql \
	schema/upgrade/0001-base.sql \
	schema/upgrade/0002-relay.sql \
	schema/upgrade/0003-presence.sql
