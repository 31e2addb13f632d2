-- weft store schema, PostgreSQL dialect. Keep equivalent to ../sqlite/0001_init.sql.
-- Opaque bodies are `json` (kept verbatim, key order included; only validated);
-- labels are `jsonb` so they can be matched with @> and a GIN index.

CREATE TABLE workflows (
    uid              TEXT   NOT NULL PRIMARY KEY,
    namespace        TEXT   NOT NULL,
    name             TEXT   NOT NULL,
    phase            TEXT   NOT NULL,
    created_ms       BIGINT NOT NULL,
    started_ms       BIGINT,
    finished_ms      BIGINT,
    message          TEXT,
    labels           JSONB  NOT NULL DEFAULT '{}',
    workflow         JSON   NOT NULL,
    status           JSON   NOT NULL,
    -- Reserved for engine replicas (which replica drives a workflow); unused yet.
    lease_owner      TEXT,
    lease_expires_ms BIGINT,
    UNIQUE (namespace, name)
);
CREATE INDEX workflows_created ON workflows (created_ms DESC);
CREATE INDEX workflows_namespace_created ON workflows (namespace, created_ms DESC);
CREATE INDEX workflows_phase_created ON workflows (phase, created_ms DESC);
CREATE INDEX workflows_labels ON workflows USING gin (labels jsonb_path_ops);

CREATE TABLE nodes (
    workflow_uid TEXT NOT NULL REFERENCES workflows (uid) ON DELETE CASCADE,
    node_id      TEXT NOT NULL,
    phase        TEXT NOT NULL,
    data         JSON NOT NULL,
    PRIMARY KEY (workflow_uid, node_id)
);

-- No foreign key: lines may arrive after their workflow was deleted and must
-- not fail the group they travel in. delete_workflow removes them explicitly.
CREATE TABLE logs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_uid TEXT   NOT NULL,
    node_id      TEXT   NOT NULL,
    attempt      BIGINT NOT NULL,
    stream       TEXT   NOT NULL,
    ts_ms        BIGINT NOT NULL,
    line         TEXT   NOT NULL
);
CREATE INDEX logs_node ON logs (workflow_uid, node_id, ts_ms);

CREATE TABLE templates (
    kind      TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    body      JSON NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);

CREATE TABLE memo (
    namespace  TEXT   NOT NULL,
    cache      TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    outputs    JSON   NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (namespace, cache, key)
);

CREATE TABLE locks (
    lock        TEXT   NOT NULL,
    holder      TEXT   NOT NULL,
    acquired_ms BIGINT NOT NULL,
    PRIMARY KEY (lock, holder)
);
