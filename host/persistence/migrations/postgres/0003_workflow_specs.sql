-- A workflow's spec moves to its own table; keep equivalent to
-- ../sqlite/0003_workflow_specs.sql (where a whole row is rewritten on every
-- UPDATE: the reason for the move). PostgreSQL's TOAST already kept the spec
-- out of the row; one schema keeps one set of queries.
CREATE TABLE workflow_specs (
    uid      TEXT NOT NULL PRIMARY KEY REFERENCES workflows (uid) ON DELETE CASCADE,
    workflow JSON NOT NULL
);
INSERT INTO workflow_specs (uid, workflow) SELECT uid, workflow FROM workflows;
ALTER TABLE workflows DROP COLUMN workflow;
