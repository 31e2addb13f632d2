-- weft store schema, SQLite dialect. Keep equivalent to ../postgres/0001_init.sql.
-- JSON bodies are TEXT (SQLite has no JSON column type; a declared type of JSON
-- would give NUMERIC affinity and turn the text "123" into an integer).

CREATE TABLE workflows (
    uid              TEXT    NOT NULL PRIMARY KEY,
    namespace        TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    phase            TEXT    NOT NULL,
    created_ms       INTEGER NOT NULL,
    started_ms       INTEGER,
    finished_ms      INTEGER,
    message          TEXT,
    labels           TEXT    NOT NULL DEFAULT '{}',
    workflow         TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    -- Reserved for engine replicas (which replica drives a workflow); unused yet.
    lease_owner      TEXT,
    lease_expires_ms INTEGER,
    UNIQUE (namespace, name)
);
CREATE INDEX workflows_created ON workflows (created_ms DESC);
CREATE INDEX workflows_namespace_created ON workflows (namespace, created_ms DESC);
CREATE INDEX workflows_phase_created ON workflows (phase, created_ms DESC);

CREATE TABLE nodes (
    workflow_uid TEXT NOT NULL REFERENCES workflows (uid) ON DELETE CASCADE,
    node_id      TEXT NOT NULL,
    phase        TEXT NOT NULL,
    data         TEXT NOT NULL,
    PRIMARY KEY (workflow_uid, node_id)
);

-- No foreign key: lines may arrive after their workflow was deleted and must
-- not fail the group they travel in. delete_workflow removes them explicitly.
CREATE TABLE logs (
    id           INTEGER PRIMARY KEY,
    workflow_uid TEXT    NOT NULL,
    node_id      TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    stream       TEXT    NOT NULL,
    ts_ms        INTEGER NOT NULL,
    line         TEXT    NOT NULL
);
CREATE INDEX logs_node ON logs (workflow_uid, node_id, ts_ms);

CREATE TABLE templates (
    kind      TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);

CREATE TABLE memo (
    namespace  TEXT    NOT NULL,
    cache      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    outputs    TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (namespace, cache, key)
);

CREATE TABLE locks (
    lock        TEXT    NOT NULL,
    holder      TEXT    NOT NULL,
    acquired_ms INTEGER NOT NULL,
    PRIMARY KEY (lock, holder)
);
