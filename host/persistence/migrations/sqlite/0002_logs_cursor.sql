-- `weft logs -f` and the API's log stream read the lines after the last one
-- they printed (by row id): without this index each poll scans the workflow's
-- lines in timestamp order.
CREATE INDEX logs_cursor ON logs (workflow_uid, id);
