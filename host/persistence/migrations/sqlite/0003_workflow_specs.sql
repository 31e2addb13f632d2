-- A workflow's spec moves to its own table. SQLite rewrites a whole row on
-- any UPDATE, overflow pages included, so with the spec beside `status` every
-- commit of a 1,000-task workflow (a 130 KB spec) read and wrote ~32 pages
-- for a status of a few hundred bytes -- and a 50 MB workflow 50 MB per commit.
CREATE TABLE workflow_specs (
    uid      TEXT NOT NULL PRIMARY KEY REFERENCES workflows (uid) ON DELETE CASCADE,
    workflow TEXT NOT NULL
);
INSERT INTO workflow_specs (uid, workflow) SELECT uid, workflow FROM workflows;
ALTER TABLE workflows DROP COLUMN workflow;
