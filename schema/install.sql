-- schema/install.sql: create or upgrade the parley schema.
--
--   psql -v ON_ERROR_STOP=1 -d DATABASE -f schema/install.sql
--
-- Creates schema parley and extension pgcrypto if missing, then applies, in
-- order, every migration of schema/upgrade/ not yet recorded in
-- parley.schema_migrations, each in its own transaction, then re-applies
-- schema/functions.sql (CREATE OR REPLACE of parley's own functions, in one
-- transaction).  A session advisory lock keeps two installers from racing.
-- Running it again on an installed database changes nothing.
--
-- The functions an integrator may redefine (session_lookup, session_check,
-- is_member, group_member_ids) are created by migration 0001 only and never
-- replaced here: see schema/README.md, "Redefining the lookups".

\set ON_ERROR_STOP on
\set QUIET on
SET client_min_messages = warning;

-- One installer at a time (any constant shared by every copy of this file).
SELECT pg_advisory_lock(7302414011) AS parley_locked \gset

CREATE SCHEMA IF NOT EXISTS parley;
COMMENT ON SCHEMA parley IS 'Parley real-time chat (installed by schema/install.sql)';
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE IF NOT EXISTS parley.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Every migration, in order.  Add a line per new file of schema/upgrade/;
-- never edit or renumber a released one.
\set parley_version 1
\set parley_migration 0001-base
\ir upgrade/apply.psql
\set parley_version 2
\set parley_migration 0002-relay
\ir upgrade/apply.psql
\set parley_version 3
\set parley_migration 0003-presence
\ir upgrade/apply.psql

-- parley's own functions, replaced on every run.
BEGIN;
\ir functions.sql
COMMIT;

SELECT pg_advisory_unlock(7302414011) AS parley_unlocked \gset
SELECT 'parley schema at version ' || max(version) AS parley_status
  FROM parley.schema_migrations \gset
\echo :parley_status
