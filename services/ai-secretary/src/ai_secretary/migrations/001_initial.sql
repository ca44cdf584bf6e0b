-- Users directory, conversations and every turn of them, and what the communicator did.
CREATE TABLE users (
    username          text PRIMARY KEY,
    display_name      text,
    department        text NOT NULL,
    position          text NOT NULL,
    email             text,
    telegram_id       bigint,
    telegram_username text,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email ON users (lower(email)) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX users_telegram_username ON users (lower(telegram_username)) WHERE telegram_username IS NOT NULL;

CREATE TABLE conversations (
    id             bigserial PRIMARY KEY,
    username       text NOT NULL,
    channel        text NOT NULL CHECK (channel IN ('email', 'tg', 'direct')),
    status         text NOT NULL CHECK (status IN ('open', 'clarifying', 'answered', 'escalated')),
    clarifications integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_by_user ON conversations (username, channel, updated_at DESC);

CREATE TABLE turns (
    id               bigserial PRIMARY KEY,
    conversation_id  bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    channel          text NOT NULL,
    username         text NOT NULL,
    message_id       text,
    request_id       text NOT NULL,
    request          text NOT NULL,
    department       text NOT NULL,
    position         text NOT NULL,
    status           text NOT NULL CHECK (status IN ('processing', 'answered', 'failed')),
    guesser_is_enough boolean,
    guesser_response text,
    analyst_response text,
    analyst_action   text,
    sources          jsonb NOT NULL DEFAULT '[]',
    is_enough        boolean,
    action           text,
    question         text,
    response         text,
    error_status     integer,
    error            text,
    timings          jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    answered_at      timestamptz
);
-- Idempotency: a channel's message is processed once.
CREATE UNIQUE INDEX turns_by_message ON turns (channel, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX turns_by_conversation ON turns (conversation_id, id);

CREATE TABLE action_results (
    id          bigserial PRIMARY KEY,
    turn_id     bigint NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
    action      text NOT NULL,
    status      text NOT NULL CHECK (status IN ('done', 'failed')),
    external_id text,
    detail      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX action_results_by_turn ON action_results (turn_id);
