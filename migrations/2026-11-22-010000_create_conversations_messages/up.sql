-- Conversations with an agent, and their messages. An assistant message is written while it
-- streams (status 'streaming', content flushed every ~250 ms) and finished with its status.

CREATE TABLE conversations (
    id         uuid PRIMARY KEY,
    agent_id   uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_agent_user_idx ON conversations (agent_id, user_id, updated_at DESC);

CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('user', 'assistant')),
    content         text NOT NULL DEFAULT '',
    status          text NOT NULL DEFAULT 'complete'
                    CHECK (status IN ('streaming', 'complete', 'stopped', 'failed')),
    error           text,
    -- The provider and model that actually served the answer (a fallback, if it came to that).
    provider        text,
    model           text,
    -- The prompt versions the system message was made of: [{"prompt_id": …, "version": …}].
    prompt_versions jsonb NOT NULL DEFAULT '[]',
    input_tokens    integer,
    output_tokens   integer,
    ttft_ms         integer,
    duration_ms     integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX messages_conversation_idx ON messages (conversation_id, id);
-- Start-up finds what a crash left streaming without scanning every message.
CREATE INDEX messages_streaming_idx ON messages (id) WHERE status = 'streaming';
