-- What the Pub/Sub consumer needs: the run's summary (to publish its completed event
-- again for a duplicate request), an 'abandoned' status for runs given up at shutdown
-- or by a process that died, and a record of messages rejected as malformed.

ALTER TABLE mirt_fit_meta ADD COLUMN summary jsonb;

ALTER TABLE mirt_fit_meta DROP CONSTRAINT mirt_fit_meta_status_check;

ALTER TABLE mirt_fit_meta ADD CONSTRAINT mirt_fit_meta_status_check
    CHECK (status IN ('running', 'succeeded', 'skipped', 'failed', 'abandoned'));

CREATE TABLE mirt_rejected_message (
    message_id   text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    reason       text NOT NULL,
    data         text,
    attributes   jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (message_id, received_at)
);
