-- A project's files. The bytes live under the data directory, named by their sha256 (one copy
-- however many rows name them); a row says which project has them, under which name.
CREATE TABLE files (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    filename text NOT NULL,
    content_type text NOT NULL,
    bytes bigint NOT NULL,
    sha256 text NOT NULL,
    -- The provider's id once uploaded to a Files API.
    provider_file_id text,
    -- 'stored' (kept by confab), later also 'uploaded', 'delete_failed'.
    status text NOT NULL DEFAULT 'stored',
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The same bytes are kept once per project.
    UNIQUE (project_id, sha256)
);
CREATE INDEX files_sha256_idx ON files (sha256);
