-- schema/demo.sql: demo users and groups for a local try-out.
--
--   psql -v ON_ERROR_STOP=1 -d DATABASE -f schema/install.sql
--   psql -v ON_ERROR_STOP=1 -d DATABASE -f schema/demo.sql
--
-- Users alice, bob and carol (password 'parley-demo'), the public group
-- 'lobby' with all three, and the private group 'staff' with alice (owner)
-- and bob.  Idempotent: what exists already is left alone (a changed
-- password is not reset).  Never run it on a production database.

\set ON_ERROR_STOP on
\set QUIET on
SET client_min_messages = warning;

DO $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT * FROM unnest(ARRAY['alice', 'bob', 'carol']) AS n LOOP
        IF NOT EXISTS (SELECT 1 FROM parley.users u WHERE lower(u.name) = m.n) THEN
            PERFORM parley.create_user(m.n, 'parley-demo');
        END IF;
    END LOOP;
    FOR m IN SELECT * FROM (VALUES ('lobby', 'public'), ('staff', 'private')) AS g (name, vis) LOOP
        IF NOT EXISTS (SELECT 1 FROM parley.groups g WHERE lower(g.name) = m.name) THEN
            PERFORM parley.create_group(m.name, m.vis);
        END IF;
    END LOOP;
    -- Only the missing memberships: add_member would reset a role an
    -- administrator has changed since.
    FOR m IN SELECT g.id AS gid, u.id AS uid, x.role
               FROM (VALUES ('lobby', 'alice', 'owner'), ('lobby', 'bob', 'member'),
                            ('lobby', 'carol', 'member'), ('staff', 'alice', 'owner'),
                            ('staff', 'bob', 'member')) AS x (grp, usr, role)
               JOIN parley.groups g ON lower(g.name) = x.grp
               JOIN parley.users u ON lower(u.name) = x.usr
              WHERE NOT EXISTS (SELECT 1 FROM parley.group_members gm
                                 WHERE gm.group_id = g.id AND gm.user_id = u.id) LOOP
        PERFORM parley.add_member(m.gid, m.uid, m.role);
    END LOOP;
END
$$;

\echo parley demo: users alice, bob, carol (password parley-demo); groups lobby (public), staff (private)
