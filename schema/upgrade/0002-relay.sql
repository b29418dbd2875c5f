-- schema/upgrade/0002-relay.sql: what parley-relay needs to deliver the
-- messages whose notifications it missed.
--
-- NOTIFY is lost while a relay's LISTEN connection is down.  When it is back
-- the relay re-LISTENs and then catches up from the table: for conversations
-- it has been delivering, every seq after the last one it delivered
-- (messages_after); for the others, what was created since shortly before
-- the connection broke (messages_since, served by the created_at index).
-- Both return the columns of message_get and need no user: they are for the
-- relay's fan-out, which applies membership itself, never for clients.

CREATE INDEX messages_created_at_idx ON parley.messages (created_at);

CREATE OR REPLACE FUNCTION parley.messages_after(p_conversation text, p_after_seq bigint,
    p_limit integer)
RETURNS TABLE (id bigint, conversation text, seq bigint, sender_id bigint, sender_name text,
               body text, client_id text, created_at timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT m.id, m.conversation, m.seq, m.sender_id, u.name, m.body, m.client_id, m.created_at
      FROM parley.messages m JOIN parley.users u ON u.id = m.sender_id
     WHERE m.conversation = p_conversation
       AND m.seq > coalesce(p_after_seq, 0)
     ORDER BY m.seq
     LIMIT least(greatest(coalesce(p_limit, 1000), 1), 10000)
$$;
COMMENT ON FUNCTION parley.messages_after(text, bigint, integer) IS
    'Relay catch-up: messages of a conversation after p_after_seq, ascending, at most p_limit (default 1000, at most 10000); no access check';

CREATE OR REPLACE FUNCTION parley.messages_since(p_since timestamptz,
    p_after_conversation text, p_after_seq bigint, p_limit integer)
RETURNS TABLE (id bigint, conversation text, seq bigint, sender_id bigint, sender_name text,
               body text, client_id text, created_at timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT m.id, m.conversation, m.seq, m.sender_id, u.name, m.body, m.client_id, m.created_at
      FROM parley.messages m JOIN parley.users u ON u.id = m.sender_id
     WHERE m.created_at > p_since
       AND (m.conversation, m.seq) > (coalesce(p_after_conversation, ''), coalesce(p_after_seq, 0))
     ORDER BY m.conversation, m.seq
     LIMIT least(greatest(coalesce(p_limit, 1000), 1), 10000)
$$;
COMMENT ON FUNCTION parley.messages_since(timestamptz, text, bigint, integer) IS
    'Relay catch-up: messages created after p_since, by conversation then seq, after the (p_after_conversation, p_after_seq) page mark; no access check';
