-- contrib/bench/load_setup.sql: benchmark users, live sessions and one group
-- for parley-load, printed as its --sessions file.  Benchmark databases only.
--
--   psql -X -q -A -t -v ON_ERROR_STOP=1 -v n=1001 -f contrib/bench/load_setup.sql >sessions.txt
--   parley-load fanout --key jwt.key --sessions sessions.txt --group "$(sed -n 's/^# group //p' sessions.txt)" ...
--
-- Users load1 .. load<n> (no password: they cannot log in through the token
-- service, only hold the sessions made here), each with one fresh session
-- valid for a day, all members of the private group "load-bench".  Re-running
-- reuses the users and the group and adds fresh sessions.  Output: "# group G"
-- and then one "user_id session_id name" line per user, in user order, which is
-- the order parley-load hands them to its connections (publishers first).

INSERT INTO parley.users (name)
SELECT 'load' || g FROM generate_series(1, :n) AS g
ON CONFLICT DO NOTHING;

SELECT COALESCE(
    (SELECT id FROM parley.groups WHERE lower(name) = 'load-bench'),
    parley.create_group('load-bench', 'private')) AS load_group \gset

INSERT INTO parley.group_members (group_id, user_id)
SELECT :load_group, u.id
  FROM parley.users u
 WHERE u.name IN (SELECT 'load' || g FROM generate_series(1, :n) AS g)
ON CONFLICT DO NOTHING;

SELECT '# group ' || :load_group;

WITH s AS (
    INSERT INTO parley.sessions (user_id, token_hash, expires_at)
    SELECT u.id, sha256(gen_random_bytes(32)), now() + interval '1 day'
      FROM parley.users u
     WHERE u.name IN (SELECT 'load' || g FROM generate_series(1, :n) AS g)
    RETURNING id, user_id
)
SELECT s.user_id || ' ' || s.id || ' ' || u.name
  FROM s JOIN parley.users u ON u.id = s.user_id
 ORDER BY u.id;
