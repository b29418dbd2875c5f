-- schema/upgrade/0003-presence.sql: what parley-relay needs to keep cluster
-- presence steady across a database outage or restart.
--
-- After an outage a relay used to register again from scratch
-- (relay_register deletes its connection rows, then it re-added them one by
-- one), so the presence trigger told everyone that each of its users went
-- offline and came back online, although no socket had closed.
-- relay_sync_connections states the relay's live connections instead and
-- changes only the rows that differ, adding before removing, so a user
-- whose connections stayed up sees no presence event at all.
--
-- sweep_stale_relays is sweep_relays that does not count the time the
-- database itself was down: right after a restart every relay's heartbeat
-- is old, and the first relay back must not sweep the others before they
-- had a chance to beat.
--
-- connection_open is connection_add that also applies, across the whole
-- cluster, what PROTOCOL.md §2 says of a user's connections: a new one with
-- the same client_instance replaces the older ones, and beyond the per-user
-- cap the oldest go.  It names each connection to close in a
-- parley_evict notification {"relay","conn","user","reason"}; the relay
-- holding it closes it with 4009.

CREATE OR REPLACE FUNCTION parley.relay_sync_connections(p_relay_id text, p_connections jsonb)
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_added   integer;
    v_removed integer;
    v_again   integer;
BEGIN
    -- p_connections: [{"c": conn_id, "u": user_id, "s": session_id, "i": client_instance}]
    INSERT INTO parley.relays AS r (relay_id) VALUES (p_relay_id)
    ON CONFLICT (relay_id) DO UPDATE SET heartbeat_at = parley.now_ms();

    -- Add first: a user with a row kept or added never drops to zero rows.
    INSERT INTO parley.connections (relay_id, conn_id, user_id, session_id, client_instance)
    SELECT DISTINCT ON (n.c) p_relay_id, n.c, n.u, n.s, n.i
      FROM jsonb_to_recordset(coalesce(p_connections, '[]')) AS n(c bigint, u bigint, s text, i text)
     WHERE n.c IS NOT NULL AND EXISTS (SELECT 1 FROM parley.users u WHERE u.id = n.u)
    ON CONFLICT (relay_id, conn_id) DO NOTHING;
    GET DIAGNOSTICS v_added = ROW_COUNT;

    DELETE FROM parley.connections c
     WHERE c.relay_id = p_relay_id
       AND NOT EXISTS (SELECT 1
                         FROM jsonb_to_recordset(coalesce(p_connections, '[]')) AS n(c bigint, u bigint)
                        WHERE n.c = c.conn_id AND n.u = c.user_id);
    GET DIAGNOSTICS v_removed = ROW_COUNT;

    -- A stale row that held one of these ids for another user is gone now.
    INSERT INTO parley.connections (relay_id, conn_id, user_id, session_id, client_instance)
    SELECT DISTINCT ON (n.c) p_relay_id, n.c, n.u, n.s, n.i
      FROM jsonb_to_recordset(coalesce(p_connections, '[]')) AS n(c bigint, u bigint, s text, i text)
     WHERE n.c IS NOT NULL AND EXISTS (SELECT 1 FROM parley.users u WHERE u.id = n.u)
    ON CONFLICT (relay_id, conn_id) DO NOTHING;
    GET DIAGNOSTICS v_again = ROW_COUNT;

    RETURN v_added + v_removed + v_again;
END
$$;
COMMENT ON FUNCTION parley.relay_sync_connections(text, jsonb) IS
    'Register relay p_relay_id (keeping its rows) and make its connections exactly p_connections ([{"c","u","s","i"}]), adding before removing, so that unchanged users get no presence event; returns the rows changed';

CREATE OR REPLACE FUNCTION parley.sweep_stale_relays(p_stale interval)
RETURNS integer
LANGUAGE sql VOLATILE
AS $$
    WITH d AS (
        DELETE FROM parley.relays r
         WHERE r.heartbeat_at < clock_timestamp() - p_stale
           AND pg_postmaster_start_time() < clock_timestamp() - p_stale
        RETURNING 1)
    SELECT count(*)::integer FROM d
$$;
COMMENT ON FUNCTION parley.sweep_stale_relays(interval) IS
    'sweep_relays, except during the first p_stale after the database (re)started, when every relay''s heartbeat is old';

CREATE OR REPLACE FUNCTION parley.connection_open(p_relay_id text, p_conn_id bigint,
    p_user bigint, p_session_id text, p_client_instance text, p_max integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_first boolean;
    v       record;
BEGIN
    -- Its presence trigger serialises on the user (advisory lock held to
    -- commit), so two new connections of one user never miss each other.
    v_first := parley.connection_add(p_relay_id, p_conn_id, p_user, p_session_id,
                                     p_client_instance);
    FOR v IN
        SELECT r.relay_id, r.conn_id,
               CASE WHEN p_client_instance IS NOT NULL
                         AND r.client_instance = p_client_instance
                    THEN 'replaced' ELSE 'too many connections' END AS reason
          FROM (SELECT c.relay_id, c.conn_id, c.client_instance,
                       row_number() OVER (ORDER BY c.connected_at DESC,
                                          (c.relay_id = p_relay_id AND c.conn_id = p_conn_id) DESC,
                                          c.conn_id DESC) AS rank
                  FROM parley.connections c
                 WHERE c.user_id = p_user) r
         WHERE NOT (r.relay_id = p_relay_id AND r.conn_id = p_conn_id)
           AND ((p_client_instance IS NOT NULL AND r.client_instance = p_client_instance)
                OR (p_max > 0 AND r.rank > p_max))
    LOOP
        PERFORM pg_notify('parley_evict', json_build_object('relay', v.relay_id,
            'conn', v.conn_id, 'user', p_user, 'reason', v.reason)::text);
    END LOOP;
    RETURN v_first;
END
$$;
COMMENT ON FUNCTION parley.connection_open(text, bigint, bigint, text, text, integer) IS
    'connection_add, then notify parley_evict for the user''s connections anywhere that the new one replaces (same client_instance) or pushes beyond p_max (the oldest); returns whether it is the user''s first';
