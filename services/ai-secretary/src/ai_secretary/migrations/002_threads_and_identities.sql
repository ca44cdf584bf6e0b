-- A conversation belongs to a channel thread (an e-mail thread, a Telegram chat, a web chat tab)
-- and can be closed by its user ("Новый разговор", /new).
ALTER TABLE conversations ADD COLUMN thread text;
ALTER TABLE conversations DROP CONSTRAINT conversations_status_check;
ALTER TABLE conversations ADD CONSTRAINT conversations_status_check
    CHECK (status IN ('open', 'clarifying', 'answered', 'escalated', 'closed'));
DROP INDEX conversations_by_user;
CREATE INDEX conversations_by_user ON conversations (username, channel, thread, updated_at DESC);

-- Idempotency per sender: a message id is the channel's and the sender's, never global, so one
-- person's id can neither read nor take over another person's message.
DROP INDEX turns_by_message;
CREATE UNIQUE INDEX turns_by_message ON turns (channel, username, message_id) WHERE message_id IS NOT NULL;
