-- schema/functions.sql: parley's own SQL functions.
--
-- Applied by install.sql after the migrations, in one transaction, on every
-- run: CREATE OR REPLACE, so a new release fixes a function by editing it
-- here.  A change of a function's signature or result type needs a migration
-- that drops the old one first.  The four functions an integrator may
-- redefine (session_lookup, session_check, is_member, group_member_ids) are
-- NOT here: migration 0001 creates them once, so a re-run never undoes an
-- integrator's version.  Every function here calls them, never their tables.
--
-- Errors the programs map to replies carry parley's own SQLSTATEs:
--   PA400 bad request, PA403 forbidden, PA404 not found, PA413 too large.
-- Administration functions raise 22023 (invalid_parameter_value), 23505
-- (unique_violation) or P0002 (no_data_found) with a one-line message.

-- pgcrypto (crypt, gen_salt) may live in any schema; look it up once here.
SELECT quote_ident(n.nspname) AS parley_pgcrypto
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'pgcrypto' \gset

-- ================================================================ helpers

CREATE OR REPLACE FUNCTION parley.setting(p_name text, p_default text)
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT coalesce((SELECT s.value FROM parley.settings s WHERE s.name = p_name), p_default)
$$;
COMMENT ON FUNCTION parley.setting(text, text) IS
    'The value of parley.settings row p_name, or p_default when there is none';

-- bcrypt via pgcrypto.  Passwords longer than 72 bytes are refused when set
-- and never match at login: bcrypt would silently ignore the rest.
CREATE OR REPLACE FUNCTION parley.hash_password(p_password text)
RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, :parley_pgcrypto, pg_temp
AS $$
    SELECT crypt(p_password, gen_salt('bf',
        least(16, greatest(4, parley.setting('password_bf_cost', '10')::integer))))
$$;
COMMENT ON FUNCTION parley.hash_password(text) IS
    'A new bcrypt hash of p_password (cost: setting password_bf_cost)';

CREATE OR REPLACE FUNCTION parley.password_matches(p_password text, p_hash text)
RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, :parley_pgcrypto, pg_temp
AS $$
    -- crypt() runs whatever the inputs, so that every answer takes as long.
    SELECT crypt(coalesce(p_password, ''), p_hash) = p_hash
           AND p_password IS NOT NULL
           AND octet_length(p_password) BETWEEN 1 AND 72
$$;
COMMENT ON FUNCTION parley.password_matches(text, text) IS
    'Does p_password match crypt(3) hash p_hash?';

-- May p_user use conversation p_conversation?  conversation_access answers
-- (error NULL, or PA400 syntax, PA403 not a participant / member, PA404 no
-- such user or group) with the conversation split up; conversation_check
-- raises that SQLSTATE instead.  The answering form lets post_messages check
-- a whole batch without a subtransaction per message.
CREATE OR REPLACE FUNCTION parley.conversation_access(p_user bigint, p_conversation text,
    OUT error text, OUT group_id bigint, OUT dm_low bigint, OUT dm_high bigint)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    m text[];
BEGIN
    m := regexp_match(p_conversation, '^dm:([1-9][0-9]{0,17}):([1-9][0-9]{0,17})$');
    IF m IS NOT NULL THEN
        dm_low := m[1]::bigint;
        dm_high := m[2]::bigint;
        IF dm_low >= dm_high THEN
            error := 'PA400';
        ELSIF p_user IS NULL OR p_user NOT IN (dm_low, dm_high) THEN
            error := 'PA403';
        ELSIF (SELECT count(*) FROM parley.users u WHERE u.id IN (dm_low, dm_high)) <> 2 THEN
            error := 'PA404';
        END IF;
        RETURN;
    END IF;
    m := regexp_match(p_conversation, '^group:([1-9][0-9]{0,17})$');
    IF m IS NOT NULL THEN
        group_id := m[1]::bigint;
        IF p_user IS NOT NULL AND parley.is_member(group_id, p_user) THEN
            RETURN;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM parley.groups g WHERE g.id = conversation_access.group_id) THEN
            error := 'PA404';
        ELSE
            error := 'PA403';
        END IF;
        RETURN;
    END IF;
    error := 'PA400';
END
$$;
COMMENT ON FUNCTION parley.conversation_access(bigint, text) IS
    'Parse conversation p_conversation and say whether p_user may use it: error NULL, or PA400/PA403/PA404';

CREATE OR REPLACE FUNCTION parley.conversation_check(p_user bigint, p_conversation text,
    OUT group_id bigint, OUT dm_low bigint, OUT dm_high bigint)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    a record;
BEGIN
    a := parley.conversation_access(p_user, p_conversation);
    group_id := a.group_id;
    dm_low := a.dm_low;
    dm_high := a.dm_high;
    CASE a.error
    WHEN 'PA400' THEN
        IF a.dm_low IS NOT NULL THEN
            RAISE EXCEPTION 'a direct conversation is dm:<lower user id>:<higher user id>'
                USING ERRCODE = 'PA400';
        END IF;
        RAISE EXCEPTION 'a conversation is dm:<low user id>:<high user id> or group:<group id>'
            USING ERRCODE = 'PA400';
    WHEN 'PA403' THEN
        IF a.group_id IS NOT NULL THEN
            RAISE EXCEPTION 'not a member of group %', a.group_id USING ERRCODE = 'PA403';
        END IF;
        RAISE EXCEPTION 'not a participant of %', p_conversation USING ERRCODE = 'PA403';
    WHEN 'PA404' THEN
        IF a.group_id IS NOT NULL THEN
            RAISE EXCEPTION 'no such group' USING ERRCODE = 'PA404';
        END IF;
        RAISE EXCEPTION 'no such user' USING ERRCODE = 'PA404';
    ELSE
        NULL;
    END CASE;
END
$$;
COMMENT ON FUNCTION parley.conversation_check(bigint, text) IS
    'Parse conversation p_conversation and check p_user may use it (raises PA400/PA403/PA404)';

-- The conversations p_user takes part in: direct ones with a message, and
-- every group conversation of a group the user is a member of.
CREATE OR REPLACE FUNCTION parley.user_conversations(p_user bigint)
RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    SELECT k.id FROM parley.conversations k WHERE k.dm_low = p_user
    UNION ALL
    SELECT k.id FROM parley.conversations k WHERE k.dm_high = p_user
    UNION ALL
    SELECT 'group:' || g.id FROM parley.groups g WHERE parley.is_member(g.id, p_user)
$$;
COMMENT ON FUNCTION parley.user_conversations(bigint) IS
    'Conversation ids of p_user: direct conversations with messages, and its groups';

-- ================================================================ token service

CREATE OR REPLACE FUNCTION parley.login_failed(p_kind text, p_key text, p_now timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_max    integer := parley.setting('login_' || p_kind || '_max_failures',
                            CASE p_kind WHEN 'account' THEN '5' ELSE '20' END)::integer;
    v_window interval := parley.setting('login_' || p_kind || '_window', '15 minutes')::interval;
    v_base   interval := parley.setting('login_lock_base', '1 minute')::interval;
    v_cap    interval := parley.setting('login_lock_max', '1 hour')::interval;
    v_fail   integer;
    v_locks  integer;
BEGIN
    INSERT INTO parley.login_throttle AS t (kind, key, failures, window_start)
    VALUES (p_kind, p_key, 1, p_now)
    ON CONFLICT (kind, key) DO UPDATE SET
        failures = CASE WHEN t.window_start > p_now - v_window THEN t.failures + 1 ELSE 1 END,
        -- a lock long past (a full window ago) is forgotten
        lockouts = CASE WHEN t.window_start > p_now - v_window
                          OR t.locked_until > p_now - v_window THEN t.lockouts ELSE 0 END,
        window_start = CASE WHEN t.window_start > p_now - v_window THEN t.window_start ELSE p_now END
    RETURNING t.failures, t.lockouts INTO v_fail, v_locks;
    IF v_fail >= v_max THEN
        UPDATE parley.login_throttle t
           SET locked_until = p_now + least(v_cap, v_base * (2 ^ least(v_locks, 30))),
               lockouts = t.lockouts + 1,
               failures = 0,
               window_start = p_now
         WHERE t.kind = p_kind AND t.key = p_key;
    END IF;
END
$$;
COMMENT ON FUNCTION parley.login_failed(text, text, timestamptz) IS
    'Count one failed login against an account name or a client address (internal)';

CREATE OR REPLACE FUNCTION parley.login(p_username text, p_password text, p_addr text,
    p_token_hash bytea, p_ttl interval, p_user_agent text)
RETURNS TABLE (status text, user_id bigint, user_name text, session_id text,
               expires_at timestamptz, retry_after integer)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    -- A bcrypt hash (cost 10) of a password nobody knows: unknown users cost
    -- the same time as known ones.
    c_dummy  constant text := '$2a$10$GTRMxLYwa0YC3jLGYanLneCxC2/mNWvSVRaY58upfiPnjYdkXmf4m';
    v_now    timestamptz := parley.now_ms();
    v_key    text := left(lower(coalesce(p_username, '')), 256);
    v_addr   text := nullif(left(btrim(coalesce(p_addr, '')), 256), '');
    v_ttl    interval := coalesce(p_ttl, parley.setting('session_ttl_default', '7 days')::interval);
    v_locked timestamptz;
    v_uid    bigint;
    v_name   text;
    v_hash   text;
    v_sid    bigint;
    v_exp    timestamptz;
BEGIN
    IF p_token_hash IS NULL OR octet_length(p_token_hash) <> 32 THEN
        RAISE EXCEPTION 'parley.login: p_token_hash must be 32 bytes (SHA-256)' USING ERRCODE = '22023';
    END IF;
    IF v_ttl <= interval '0' THEN
        RAISE EXCEPTION 'parley.login: p_ttl must be positive' USING ERRCODE = '22023';
    END IF;

    SELECT max(t.locked_until) INTO v_locked
      FROM parley.login_throttle t
     WHERE ((t.kind = 'account' AND t.key = v_key) OR (t.kind = 'addr' AND t.key = v_addr))
       AND t.locked_until > v_now;
    IF v_locked IS NOT NULL THEN
        RETURN QUERY SELECT 'too_many_attempts'::text, NULL::bigint, NULL::text, NULL::text,
            NULL::timestamptz, greatest(1, ceil(extract(epoch FROM v_locked - v_now)))::integer;
        RETURN;
    END IF;

    SELECT u.id, u.name, u.password_hash INTO v_uid, v_name, v_hash
      FROM parley.users u WHERE lower(u.name) = v_key;
    IF NOT (parley.password_matches(p_password, coalesce(v_hash, c_dummy)) AND v_hash IS NOT NULL) THEN
        PERFORM parley.login_failed('account', v_key, v_now);
        IF v_addr IS NOT NULL THEN
            PERFORM parley.login_failed('addr', v_addr, v_now);
        END IF;
        RETURN QUERY SELECT 'invalid_credentials'::text, NULL::bigint, NULL::text, NULL::text,
            NULL::timestamptz, NULL::integer;
        RETURN;
    END IF;

    DELETE FROM parley.login_throttle t WHERE t.kind = 'account' AND t.key = v_key;
    INSERT INTO parley.sessions AS s (user_id, token_hash, created_at, expires_at, client_addr, user_agent)
    VALUES (v_uid, p_token_hash, v_now, v_now + v_ttl, v_addr, left(p_user_agent, 512))
    RETURNING s.id, s.expires_at INTO v_sid, v_exp;
    RETURN QUERY SELECT 'ok'::text, v_uid, v_name, v_sid::text, v_exp, NULL::integer;
END
$$;
COMMENT ON FUNCTION parley.login(text, text, text, bytea, interval, text) IS
    'Check a password with throttling; on success store a session (status ok, invalid_credentials, too_many_attempts)';

CREATE OR REPLACE FUNCTION parley.logout(p_token_hash bytea)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    WITH r AS (
        UPDATE parley.sessions s SET revoked_at = parley.now_ms()
         WHERE s.token_hash = p_token_hash
           AND s.revoked_at IS NULL
           AND s.expires_at > clock_timestamp()
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM r)
$$;
COMMENT ON FUNCTION parley.logout(bytea) IS
    'Revoke the session with this token hash; true if it was live';

-- ================================================================ relay: messages

CREATE OR REPLACE FUNCTION parley.post_message(p_sender bigint, p_conversation text,
    p_body text, p_client_id text)
RETURNS TABLE (id bigint, seq bigint, created_at timestamptz, duplicate boolean)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    c     record;
    v_seq bigint;
    v_id  bigint;
    v_at  timestamptz;
BEGIN
    IF p_sender IS NULL OR p_conversation IS NULL OR p_body IS NULL OR p_client_id IS NULL THEN
        RAISE EXCEPTION 'sender, conversation, body and client_id are required' USING ERRCODE = 'PA400';
    END IF;
    IF octet_length(p_client_id) NOT BETWEEN 1 AND 64 THEN
        RAISE EXCEPTION 'client_id must be 1 to 64 bytes' USING ERRCODE = 'PA400';
    END IF;

    -- A retry: answer with the original and store nothing.
    RETURN QUERY SELECT m.id, m.seq, m.created_at, true
                   FROM parley.messages m
                  WHERE m.sender_id = p_sender AND m.client_id = p_client_id;
    IF FOUND THEN
        RETURN;
    END IF;

    IF octet_length(p_body) > 65536 THEN
        RAISE EXCEPTION 'body larger than 64 KiB' USING ERRCODE = 'PA413';
    END IF;
    c := parley.conversation_check(p_sender, p_conversation);

    -- The counter row stays locked until commit: the next sender waits, so
    -- seq is gapless and in commit order.
    UPDATE parley.conversations k SET last_seq = k.last_seq + 1
     WHERE k.id = p_conversation
    RETURNING k.last_seq INTO v_seq;
    IF NOT FOUND THEN
        INSERT INTO parley.conversations AS k (id, group_id, dm_low, dm_high)
        VALUES (p_conversation, c.group_id, c.dm_low, c.dm_high)
        ON CONFLICT (id) DO NOTHING;
        UPDATE parley.conversations k SET last_seq = k.last_seq + 1
         WHERE k.id = p_conversation
        RETURNING k.last_seq INTO v_seq;
    END IF;

    INSERT INTO parley.messages AS m (conversation, seq, sender_id, body, client_id)
    VALUES (p_conversation, v_seq, p_sender, p_body, p_client_id)
    ON CONFLICT (sender_id, client_id) DO NOTHING
    RETURNING m.id, m.created_at INTO v_id, v_at;
    IF v_id IS NULL THEN
        -- The same client_id committed concurrently: give the number back
        -- (still locked by us, so nobody saw it) and answer with the original.
        UPDATE parley.conversations k SET last_seq = k.last_seq - 1 WHERE k.id = p_conversation;
        RETURN QUERY SELECT m.id, m.seq, m.created_at, true
                       FROM parley.messages m
                      WHERE m.sender_id = p_sender AND m.client_id = p_client_id;
        RETURN;
    END IF;

    PERFORM pg_notify('parley_message',
        '{"id":' || v_id || ',"conversation":' || to_json(p_conversation)::text
        || ',"seq":' || v_seq || '}');
    RETURN QUERY SELECT v_id, v_seq, v_at, false;
END
$$;
COMMENT ON FUNCTION parley.post_message(bigint, text, text, text) IS
    'Store a message with the next seq of its conversation and notify parley_message; a repeated client_id returns the original (duplicate = true)';

-- Group commit: many post_message calls in one transaction, for the relay
-- to store every message waiting at a moment with one commit (one WAL flush,
-- one pass through NOTIFY's commit lock).  p_batch is a JSON array of
-- {"s": sender, "c": conversation, "b": body, "k": client_id}; the result has
-- a row per element, by its 1-based position (ord), with what post_message
-- would have returned, or error = the SQLSTATE post_message would have
-- raised (PA400, PA403, PA404, PA413) for that element alone: one bad
-- message does not fail the others.  Elements are handled as if posted one
-- after another in array order: seq follows it within a conversation, and a
-- client_id repeated inside the batch is a duplicate of its first copy.
-- The counter rows are locked in conversation order, so batches never
-- deadlock each other.  Anything else (a client_id committed concurrently by
-- another transaction: 23505) fails the whole call; the caller then posts
-- the elements one by one with post_message.
CREATE OR REPLACE FUNCTION parley.post_messages(p_batch json)
RETURNS TABLE (ord integer, id bigint, seq bigint, created_at timestamptz,
               duplicate boolean, error text)
LANGUAGE plpgsql VOLATILE
-- The statements below take arrays, whatever their size: planning them
-- anew for each call would cost more than running them (measured: a batch
-- of one 1.26 -> 0.81 ms).
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    a_s   bigint[];
    a_c   text[];
    a_b   text[];
    a_k   text[];
    a_e   text[];
    i_id  bigint[];
    i_c   text[];
    i_seq bigint[];
    k     record;
    r     record;
BEGIN
    IF p_batch IS NULL OR json_typeof(p_batch) <> 'array' THEN
        RAISE EXCEPTION 'a batch is a JSON array' USING ERRCODE = 'PA400';
    END IF;
    SELECT array_agg(x.s ORDER BY x.o), array_agg(x.c ORDER BY x.o),
           array_agg(x.b ORDER BY x.o), array_agg(x.k ORDER BY x.o)
      INTO a_s, a_c, a_b, a_k
      FROM ROWS FROM (json_to_recordset(p_batch) AS (s bigint, c text, b text, k text))
           WITH ORDINALITY AS x(s, c, b, k, o);
    IF a_s IS NULL THEN
        RETURN;
    END IF;

    -- What each element would meet, in post_message's order of checks:
    -- arguments, an earlier copy (stored or in this batch), size, access.
    WITH u AS (
        SELECT u.s, u.c, u.b, u.k, u.o,
               row_number() OVER (PARTITION BY u.s, u.k ORDER BY u.o) AS copy
          FROM unnest(a_s, a_c, a_b, a_k) WITH ORDINALITY AS u(s, c, b, k, o)
    ), acc AS (
        SELECT p.s, p.c, (parley.conversation_access(p.s, p.c)).error AS e
          FROM (SELECT DISTINCT u.s, u.c FROM u
                 WHERE u.s IS NOT NULL AND u.c IS NOT NULL) p
    )
    SELECT array_agg(CASE
               WHEN u.s IS NULL OR u.c IS NULL OR u.b IS NULL OR u.k IS NULL
                    OR octet_length(u.k) NOT BETWEEN 1 AND 64 THEN 'PA400'
               WHEN u.copy > 1 OR EXISTS (SELECT 1 FROM parley.messages m
                                  WHERE m.sender_id = u.s AND m.client_id = u.k) THEN 'dup'
               WHEN octet_length(u.b) > 65536 THEN 'PA413'
               ELSE acc.e END ORDER BY u.o)
      INTO a_e
      FROM u LEFT JOIN acc ON acc.s = u.s AND acc.c = u.c;

    -- First message of a conversation: create its counter row (rare).
    FOR r IN SELECT DISTINCT ON (u.c) u.c, u.s
               FROM unnest(a_s, a_c, a_e) AS u(s, c, e)
              WHERE u.e IS NULL
                AND NOT EXISTS (SELECT 1 FROM parley.conversations k WHERE k.id = u.c)
    LOOP
        k := parley.conversation_check(r.s, r.c);
        INSERT INTO parley.conversations AS q (id, group_id, dm_low, dm_high)
        VALUES (r.c, k.group_id, k.dm_low, k.dm_high)
        ON CONFLICT (id) DO NOTHING;
    END LOOP;

    -- Lock the counters in a fixed order, then take seq numbers for all.
    PERFORM 1 FROM parley.conversations q
      WHERE q.id IN (SELECT u.c FROM unnest(a_c, a_e) AS u(c, e) WHERE u.e IS NULL)
      ORDER BY q.id FOR NO KEY UPDATE;

    WITH v AS (
        SELECT u.s, u.c, u.b, u.k, u.o
          FROM unnest(a_s, a_c, a_b, a_k, a_e) WITH ORDINALITY AS u(s, c, b, k, e, o)
         WHERE u.e IS NULL
    ), n AS (
        SELECT v.c, count(*) AS cnt FROM v GROUP BY v.c
    ), up AS (
        UPDATE parley.conversations q SET last_seq = q.last_seq + n.cnt
          FROM n WHERE q.id = n.c
        RETURNING q.id, q.last_seq - n.cnt AS base
    ), ins AS (
        INSERT INTO parley.messages AS m (conversation, seq, sender_id, body, client_id)
        SELECT v.c, up.base + row_number() OVER (PARTITION BY v.c ORDER BY v.o),
               v.s, v.b, v.k
          FROM v JOIN up ON up.id = v.c
         ORDER BY v.o
        RETURNING m.id, m.conversation, m.seq
    )
    SELECT array_agg(ins.id ORDER BY ins.id), array_agg(ins.conversation ORDER BY ins.id),
           array_agg(ins.seq ORDER BY ins.id)
      INTO i_id, i_c, i_seq
      FROM ins;

    PERFORM pg_notify('parley_message',
                '{"id":' || x.id || ',"conversation":' || to_json(x.c)::text
                || ',"seq":' || x.seq || '}')
       FROM unnest(i_id, i_c, i_seq) AS x(id, c, seq);

    -- This statement sees the rows just inserted: a copy repeated inside
    -- the batch finds its first one.
    RETURN QUERY
    SELECT u.o::integer, m.id, m.seq, m.created_at,
           u.e IS NOT DISTINCT FROM 'dup' AND m.id IS NOT NULL,
           CASE WHEN m.id IS NOT NULL THEN NULL
                WHEN u.e = 'dup' THEN (SELECT f.e FROM unnest(a_s, a_k, a_e)
                                          WITH ORDINALITY AS f(s, k, e, o)
                                        WHERE f.s = u.s AND f.k = u.k
                                        ORDER BY f.o LIMIT 1)
                ELSE u.e END
      FROM unnest(a_s, a_k, a_e) WITH ORDINALITY AS u(s, k, e, o)
      LEFT JOIN parley.messages m
             ON (u.e IS NULL OR u.e = 'dup') AND m.sender_id = u.s AND m.client_id = u.k
     ORDER BY u.o;
END
$$;
COMMENT ON FUNCTION parley.post_messages(json) IS
    'post_message for a JSON array of {s,c,b,k} in one transaction (group commit); a row per element, error = SQLSTATE for elements refused';

CREATE OR REPLACE FUNCTION parley.message_get(p_id bigint)
RETURNS TABLE (id bigint, conversation text, seq bigint, sender_id bigint, sender_name text,
               body text, client_id text, created_at timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT m.id, m.conversation, m.seq, m.sender_id, u.name, m.body, m.client_id, m.created_at
      FROM parley.messages m JOIN parley.users u ON u.id = m.sender_id
     WHERE m.id = p_id
$$;
COMMENT ON FUNCTION parley.message_get(bigint) IS
    'One message by id with its sender''s name (for delivering a parley_message notification)';

CREATE OR REPLACE FUNCTION parley.conversation_recipients(p_conversation text)
RETURNS SETOF bigint
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    m text[];
BEGIN
    m := regexp_match(p_conversation, '^dm:([1-9][0-9]{0,17}):([1-9][0-9]{0,17})$');
    IF m IS NOT NULL THEN
        RETURN NEXT m[1]::bigint;
        RETURN NEXT m[2]::bigint;
        RETURN;
    END IF;
    m := regexp_match(p_conversation, '^group:([1-9][0-9]{0,17})$');
    IF m IS NOT NULL THEN
        RETURN QUERY SELECT * FROM parley.group_member_ids(m[1]::bigint);
        RETURN;
    END IF;
    RAISE EXCEPTION 'a conversation is dm:<low user id>:<high user id> or group:<group id>'
        USING ERRCODE = 'PA400';
END
$$;
COMMENT ON FUNCTION parley.conversation_recipients(text) IS
    'User ids a message of this conversation goes to (both users, or group_member_ids)';

CREATE OR REPLACE FUNCTION parley.history(p_user bigint, p_conversation text,
    p_before_seq bigint, p_limit integer)
RETURNS TABLE (id bigint, conversation text, seq bigint, sender_id bigint, sender_name text,
               body text, client_id text, created_at timestamptz)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM parley.conversation_check(p_user, p_conversation);
    RETURN QUERY
    SELECT h.* FROM (
        SELECT m.id, m.conversation, m.seq, m.sender_id, u.name, m.body, m.client_id, m.created_at
          FROM parley.messages m JOIN parley.users u ON u.id = m.sender_id
         WHERE m.conversation = p_conversation
           AND (p_before_seq IS NULL OR m.seq < p_before_seq)
         ORDER BY m.seq DESC
         LIMIT least(greatest(coalesce(p_limit, 50), 1), 1000)) h
    ORDER BY h.seq;
END
$$;
COMMENT ON FUNCTION parley.history(bigint, text, bigint, integer) IS
    'The newest p_limit (default 50, at most 1000) messages before p_before_seq (NULL: the newest), ascending; checks access';

CREATE OR REPLACE FUNCTION parley.sync_messages(p_user bigint, p_since jsonb, p_limit integer)
RETURNS TABLE (id bigint, conversation text, seq bigint, sender_id bigint, sender_name text,
               body text, client_id text, created_at timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT m.id, m.conversation, m.seq, m.sender_id, u.name, m.body, m.client_id, m.created_at
      FROM parley.user_conversations(p_user) AS c(conversation)
      JOIN parley.messages m ON m.conversation = c.conversation
      JOIN parley.users u ON u.id = m.sender_id
     WHERE m.seq > coalesce(
               CASE WHEN jsonb_typeof(p_since -> c.conversation) = 'number'
                    THEN (p_since ->> c.conversation)::numeric::bigint END, 0)
     ORDER BY m.conversation, m.seq
     LIMIT least(greatest(coalesce(p_limit, 1000), 1), 10000)
$$;
COMMENT ON FUNCTION parley.sync_messages(bigint, jsonb, integer) IS
    'Messages of all p_user''s conversations after the seq given per conversation in p_since ({"conv": seq}; unlisted = 0), by conversation then seq; at most p_limit (call again with the last seqs to page)';

CREATE OR REPLACE FUNCTION parley.mark_read(p_user bigint, p_conversation text, p_seq bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    v_last bigint;
    v_seq  bigint;
BEGIN
    PERFORM parley.conversation_check(p_user, p_conversation);
    SELECT k.last_seq INTO v_last FROM parley.conversations k WHERE k.id = p_conversation;
    IF v_last IS NULL THEN
        RETURN 0;                   -- no message yet: nothing to have read
    END IF;
    INSERT INTO parley.read_positions AS r (conversation, user_id, seq)
    VALUES (p_conversation, p_user, least(greatest(coalesce(p_seq, 0), 0), v_last))
    ON CONFLICT (conversation, user_id) DO UPDATE
        SET seq = greatest(r.seq, EXCLUDED.seq), updated_at = parley.now_ms()
    RETURNING r.seq INTO v_seq;
    RETURN v_seq;
END
$$;
COMMENT ON FUNCTION parley.mark_read(bigint, text, bigint) IS
    'Move p_user''s read position in a conversation forward (never back, never past last_seq); returns it';

CREATE OR REPLACE FUNCTION parley.conversation_list(p_user bigint)
RETURNS TABLE (conversation text, last_seq bigint, read_seq bigint, title text)
LANGUAGE sql STABLE
AS $$
    SELECT c.conversation,
           coalesce(k.last_seq, 0),
           coalesce(r.seq, 0),
           CASE WHEN k.dm_low IS NOT NULL
                THEN (SELECT u.name FROM parley.users u
                       WHERE u.id = CASE WHEN k.dm_low = p_user THEN k.dm_high ELSE k.dm_low END)
                ELSE (SELECT g.name FROM parley.groups g
                       WHERE 'group:' || g.id = c.conversation) END
      FROM parley.user_conversations(p_user) AS c(conversation)
      LEFT JOIN parley.conversations k ON k.id = c.conversation
      LEFT JOIN parley.read_positions r ON r.conversation = c.conversation AND r.user_id = p_user
     ORDER BY c.conversation
$$;
COMMENT ON FUNCTION parley.conversation_list(bigint) IS
    'p_user''s conversations with last_seq, read_seq and a title (the other user''s or the group''s name)';

-- ================================================================ relay: groups and users

CREATE OR REPLACE FUNCTION parley.group_list(p_user bigint)
RETURNS TABLE (id bigint, name text, visibility text, member boolean, role text)
LANGUAGE sql STABLE
AS $$
    SELECT g.id, g.name, g.visibility, x.member,
           CASE WHEN x.member THEN coalesce(
               (SELECT m.role FROM parley.group_members m
                 WHERE m.group_id = g.id AND m.user_id = p_user), 'member') END
      FROM parley.groups g
      CROSS JOIN LATERAL (SELECT coalesce(parley.is_member(g.id, p_user), false) AS member) x
     WHERE x.member OR g.visibility = 'public'
     ORDER BY g.id
$$;
COMMENT ON FUNCTION parley.group_list(bigint) IS
    'The groups of p_user and every public group (member false, role NULL)';

CREATE OR REPLACE FUNCTION parley.join_group(p_group bigint, p_user bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_vis text;
BEGIN
    SELECT g.visibility INTO v_vis FROM parley.groups g WHERE g.id = p_group;
    IF v_vis IS NULL THEN
        RAISE EXCEPTION 'no such group' USING ERRCODE = 'PA404';
    END IF;
    IF parley.is_member(p_group, p_user) THEN
        RETURN false;
    END IF;
    IF v_vis <> 'public' THEN
        RAISE EXCEPTION 'group % is private: members are added by an administrator', p_group
            USING ERRCODE = 'PA403';
    END IF;
    INSERT INTO parley.group_members (group_id, user_id, role)
    VALUES (p_group, p_user, 'member')
    ON CONFLICT DO NOTHING;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION parley.join_group(bigint, bigint) IS
    'Join a public group (PA403 if private, PA404 if missing); true if newly a member';

CREATE OR REPLACE FUNCTION parley.leave_group(p_group bigint, p_user bigint)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    WITH d AS (
        DELETE FROM parley.group_members m
         WHERE m.group_id = p_group AND m.user_id = p_user
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d)
$$;
COMMENT ON FUNCTION parley.leave_group(bigint, bigint) IS
    'Leave a group; true if p_user was a member';

CREATE OR REPLACE FUNCTION parley.contact_ids(p_user bigint)
RETURNS SETOF bigint
LANGUAGE sql STABLE
AS $$
    SELECT p_user
    UNION
    SELECT m2.user_id FROM parley.group_members m1
      JOIN parley.group_members m2 ON m2.group_id = m1.group_id
     WHERE m1.user_id = p_user
    UNION
    SELECT k.dm_high FROM parley.conversations k WHERE k.dm_low = p_user
    UNION
    SELECT k.dm_low FROM parley.conversations k WHERE k.dm_high = p_user
$$;
COMMENT ON FUNCTION parley.contact_ids(bigint) IS
    'p_user and the users sharing a group or a direct conversation with it (presence scope contacts)';

CREATE OR REPLACE FUNCTION parley.user_list(p_user bigint, p_scope text DEFAULT 'all')
RETURNS TABLE (id bigint, name text, online boolean)
LANGUAGE sql STABLE
AS $$
    SELECT u.id, u.name,
           EXISTS (SELECT 1 FROM parley.connections c WHERE c.user_id = u.id)
      FROM parley.users u
     WHERE p_scope IS DISTINCT FROM 'contacts'
        OR u.id IN (SELECT * FROM parley.contact_ids(p_user))
     ORDER BY u.id
$$;
COMMENT ON FUNCTION parley.user_list(bigint, text) IS
    'Users with their cluster-wide online state: all of them, or p_scope ''contacts'' (contact_ids(p_user))';

-- ================================================================ relay: cluster presence

CREATE OR REPLACE FUNCTION parley.relay_register(p_relay_id text)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
    -- A relay coming back under the same id starts afresh.
    DELETE FROM parley.connections c WHERE c.relay_id = p_relay_id;
    INSERT INTO parley.relays AS r (relay_id) VALUES (p_relay_id)
    ON CONFLICT (relay_id) DO UPDATE
        SET started_at = parley.now_ms(), heartbeat_at = parley.now_ms();
$$;
COMMENT ON FUNCTION parley.relay_register(text) IS
    'Register (or re-register, dropping its old connections) relay p_relay_id';

CREATE OR REPLACE FUNCTION parley.relay_heartbeat(p_relay_id text)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    WITH u AS (
        UPDATE parley.relays r SET heartbeat_at = parley.now_ms()
         WHERE r.relay_id = p_relay_id
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM u)
$$;
COMMENT ON FUNCTION parley.relay_heartbeat(text) IS
    'Refresh a relay''s heartbeat; false if it was swept (register again and re-add its connections)';

CREATE OR REPLACE FUNCTION parley.relay_unregister(p_relay_id text)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    WITH d AS (DELETE FROM parley.relays r WHERE r.relay_id = p_relay_id RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d)
$$;
COMMENT ON FUNCTION parley.relay_unregister(text) IS
    'Remove a relay and (cascade) its connections, e.g. at shutdown';

CREATE OR REPLACE FUNCTION parley.sweep_relays(p_stale interval)
RETURNS integer
LANGUAGE sql VOLATILE
AS $$
    WITH d AS (
        DELETE FROM parley.relays r
         WHERE r.heartbeat_at < clock_timestamp() - p_stale
        RETURNING 1)
    SELECT count(*)::integer FROM d
$$;
COMMENT ON FUNCTION parley.sweep_relays(interval) IS
    'Delete relays whose heartbeat is older than p_stale, with their connections; returns how many';

CREATE OR REPLACE FUNCTION parley.connection_add(p_relay_id text, p_conn_id bigint,
    p_user bigint, p_session_id text, p_client_instance text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    INSERT INTO parley.connections (relay_id, conn_id, user_id, session_id, client_instance)
    VALUES (p_relay_id, p_conn_id, p_user, p_session_id, p_client_instance);
    -- The presence trigger has serialised on this user: the count is exact.
    RETURN (SELECT count(*) = 1 FROM parley.connections c WHERE c.user_id = p_user);
END
$$;
COMMENT ON FUNCTION parley.connection_add(text, bigint, bigint, text, text) IS
    'Register a connection; true if it is the user''s first in the cluster (parley_presence online is sent)';

CREATE OR REPLACE FUNCTION parley.connection_remove(p_relay_id text, p_conn_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_user bigint;
BEGIN
    DELETE FROM parley.connections c
     WHERE c.relay_id = p_relay_id AND c.conn_id = p_conn_id
    RETURNING c.user_id INTO v_user;
    IF v_user IS NULL THEN
        RETURN false;
    END IF;
    RETURN NOT EXISTS (SELECT 1 FROM parley.connections c WHERE c.user_id = v_user);
END
$$;
COMMENT ON FUNCTION parley.connection_remove(text, bigint) IS
    'Unregister a connection; true if it was the user''s last in the cluster (parley_presence offline is sent)';

-- ================================================================ administration (PROTOCOL.md §3)

CREATE OR REPLACE FUNCTION parley.check_password_text(password text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF password IS NULL OR password = '' THEN
        RAISE EXCEPTION 'password must not be empty' USING ERRCODE = '22023';
    END IF;
    IF octet_length(password) > 72 THEN
        RAISE EXCEPTION 'password must be at most 72 bytes (bcrypt ignores the rest)'
            USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION parley.check_password_text(text) IS
    'Raise 22023 unless password is 1 to 72 bytes (internal)';

CREATE OR REPLACE FUNCTION parley.create_user(name text, password text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_id bigint;
BEGIN
    IF name IS NULL OR btrim(name) = '' THEN
        RAISE EXCEPTION 'user name must not be empty' USING ERRCODE = '22023';
    END IF;
    IF length(name) > 64 THEN
        RAISE EXCEPTION 'user name must be at most 64 characters' USING ERRCODE = '22023';
    END IF;
    IF name <> btrim(name) OR name ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'user name must not contain control characters or start or end with spaces'
            USING ERRCODE = '22023';
    END IF;
    PERFORM parley.check_password_text(password);
    IF EXISTS (SELECT 1 FROM parley.users u WHERE lower(u.name) = lower(create_user.name)) THEN
        RAISE EXCEPTION 'user name "%" is taken', name USING ERRCODE = '23505';
    END IF;
    INSERT INTO parley.users AS u (name, password_hash)
    VALUES (create_user.name, parley.hash_password(password))
    RETURNING u.id INTO v_id;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION parley.create_user(text, text) IS
    'Create a user (name 1 to 64 characters, unique ignoring case; password stored as a bcrypt hash); returns its id';

CREATE OR REPLACE FUNCTION parley.set_password(user_id bigint, password text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF password IS NOT NULL THEN
        PERFORM parley.check_password_text(password);
    END IF;
    UPDATE parley.users u
       SET password_hash = CASE WHEN password IS NULL THEN NULL
                                ELSE parley.hash_password(password) END
     WHERE u.id = set_password.user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no user %', user_id USING ERRCODE = 'P0002';
    END IF;
END
$$;
COMMENT ON FUNCTION parley.set_password(bigint, text) IS
    'Set a user''s password (NULL: no password, the user cannot log in through parley.login)';

CREATE OR REPLACE FUNCTION parley.create_group(name text, visibility text DEFAULT 'private')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_id bigint;
BEGIN
    IF name IS NULL OR btrim(name) = '' THEN
        RAISE EXCEPTION 'group name must not be empty' USING ERRCODE = '22023';
    END IF;
    IF length(name) > 100 OR name <> btrim(name) OR name ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'group name must be at most 100 characters, without control characters or surrounding spaces'
            USING ERRCODE = '22023';
    END IF;
    IF visibility IS NULL OR visibility NOT IN ('public', 'private') THEN
        RAISE EXCEPTION 'visibility must be ''public'' or ''private''' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM parley.groups g WHERE lower(g.name) = lower(create_group.name)) THEN
        RAISE EXCEPTION 'group name "%" is taken', name USING ERRCODE = '23505';
    END IF;
    INSERT INTO parley.groups AS g (name, visibility)
    VALUES (create_group.name, create_group.visibility)
    RETURNING g.id INTO v_id;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION parley.create_group(text, text) IS
    'Create a group (visibility public: anyone may join from the relay; private: members are added); returns its id';

CREATE OR REPLACE FUNCTION parley.add_member(group_id bigint, user_id bigint, role text DEFAULT 'member')
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF role IS NULL OR role NOT IN ('member', 'admin', 'owner') THEN
        RAISE EXCEPTION 'role must be ''member'', ''admin'' or ''owner''' USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM parley.groups g WHERE g.id = add_member.group_id) THEN
        RAISE EXCEPTION 'no group %', group_id USING ERRCODE = 'P0002';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM parley.users u WHERE u.id = add_member.user_id) THEN
        RAISE EXCEPTION 'no user %', user_id USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO parley.group_members AS m (group_id, user_id, role)
    VALUES (add_member.group_id, add_member.user_id, add_member.role)
    ON CONFLICT ON CONSTRAINT group_members_pkey DO UPDATE
        SET role = EXCLUDED.role
      WHERE m.role IS DISTINCT FROM EXCLUDED.role;
END
$$;
COMMENT ON FUNCTION parley.add_member(bigint, bigint, text) IS
    'Add a user to a group with a role (member, admin, owner), or change its role';

CREATE OR REPLACE FUNCTION parley.remove_member(group_id bigint, user_id bigint)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    WITH d AS (
        DELETE FROM parley.group_members m
         WHERE m.group_id = $1 AND m.user_id = $2
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d)
$$;
COMMENT ON FUNCTION parley.remove_member(bigint, bigint) IS
    'Remove a user from a group (the relays stop delivering it at once); true if it was a member';

CREATE OR REPLACE FUNCTION parley.revoke_sessions(user_id bigint)
RETURNS integer
LANGUAGE sql VOLATILE
AS $$
    WITH r AS (
        UPDATE parley.sessions s SET revoked_at = parley.now_ms()
         WHERE s.user_id = $1
           AND s.revoked_at IS NULL
           AND s.expires_at > clock_timestamp()
        RETURNING 1)
    SELECT count(*)::integer FROM r
$$;
COMMENT ON FUNCTION parley.revoke_sessions(bigint) IS
    'Revoke every live session of a user (the relays close its sockets with 4011); returns how many';

CREATE OR REPLACE FUNCTION parley.purge(p_grace interval DEFAULT '1 day')
RETURNS integer
LANGUAGE sql VOLATILE
AS $$
    WITH s AS (
        DELETE FROM parley.sessions s
         WHERE coalesce(s.revoked_at, s.expires_at) < clock_timestamp() - p_grace
        RETURNING 1),
    t AS (
        DELETE FROM parley.login_throttle t
         WHERE t.window_start < clock_timestamp() - p_grace
           AND coalesce(t.locked_until, '-infinity') < clock_timestamp() - p_grace
        RETURNING 1)
    SELECT ((SELECT count(*) FROM s) + (SELECT count(*) FROM t))::integer
$$;
COMMENT ON FUNCTION parley.purge(interval) IS
    'Housekeeping: delete sessions ended and throttle rows idle for longer than p_grace; returns rows deleted';

-- ================================================================ notification triggers
-- Payloads are compact JSON with ids only (schema/README.md).

CREATE OR REPLACE FUNCTION parley.sessions_notify()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    PERFORM pg_notify('parley_session',
        '{"op":"revoke","sid":"' || r.id || '","user":' || r.user_id || '}');
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION parley.sessions_notify_truncate()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('parley_session', '{"op":"truncate"}');
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION parley.group_members_notify()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('parley_member',
            '{"op":"add","group":' || NEW.group_id || ',"user":' || NEW.user_id || '}');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('parley_member',
            '{"op":"remove","group":' || OLD.group_id || ',"user":' || OLD.user_id || '}');
    ELSIF OLD.group_id = NEW.group_id AND OLD.user_id = NEW.user_id THEN
        PERFORM pg_notify('parley_member',
            '{"op":"role","group":' || NEW.group_id || ',"user":' || NEW.user_id || '}');
    ELSE
        -- The row moved to another group or user: a removal and an addition.
        PERFORM pg_notify('parley_member',
            '{"op":"remove","group":' || OLD.group_id || ',"user":' || OLD.user_id || '}');
        PERFORM pg_notify('parley_member',
            '{"op":"add","group":' || NEW.group_id || ',"user":' || NEW.user_id || '}');
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION parley.group_members_notify_truncate()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('parley_member', '{"op":"truncate"}');
    RETURN NULL;
END
$$;

-- Presence: serialise on the user (transaction advisory lock), then count
-- the committed connections: the first one in makes the user online, the
-- last one out offline, even when relays race.
CREATE OR REPLACE FUNCTION parley.connections_presence()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_user bigint;
    v_n    bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        v_user := NEW.user_id;
    ELSE
        v_user := OLD.user_id;
    END IF;
    PERFORM pg_advisory_xact_lock(7302414, hashint8(v_user));
    SELECT count(*) INTO v_n FROM parley.connections c WHERE c.user_id = v_user;
    IF TG_OP = 'INSERT' AND v_n = 1 THEN
        PERFORM pg_notify('parley_presence', '{"op":"online","user":' || v_user || '}');
    ELSIF TG_OP = 'DELETE' AND v_n = 0 THEN
        PERFORM pg_notify('parley_presence', '{"op":"offline","user":' || v_user || '}');
    END IF;
    RETURN NULL;
END
$$;
