-- The built-in reference API (contacts, messages, broadcasts, flows, flow runs): JSON documents
-- per workspace and kind. Every query names the workspace, so tenants cannot see each other.
CREATE TABLE documents (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    kind          TEXT NOT NULL,
    id            TEXT NOT NULL,
    body          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, kind, id)
);
