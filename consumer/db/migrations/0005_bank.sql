-- The item bank of each scope: the scale held from week to week. A scope has a bank once an
-- operator adopts one (python -m consumer bank adopt); a scope without one is calibrated and
-- linked through its anchors as before.
--
-- status: operational (bank parameters fixed, scored on, holding the scale), pretest (calibrated
-- onto the bank's scale each run, not scored, until it passes the promotion gates), suspended
-- (an operational item that drifted: out of the fixed set and unscored until a recalibration is
-- accepted).
CREATE TABLE mirt_bank_item (
    scope       text NOT NULL DEFAULT '',
    item_id     bigint NOT NULL,
    status      text NOT NULL CHECK (status IN ('operational', 'pretest', 'suspended')),
    model       text NOT NULL,
    params      jsonb NOT NULL,
    -- The run whose estimates these are, and the change that put them here.
    run_id      uuid,
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, item_id)
);

-- How every bank item got where it is: one row per change (adopted, promoted, suspended,
-- recalibrated), never updated.
CREATE TABLE mirt_bank_history (
    id          bigserial PRIMARY KEY,
    scope       text NOT NULL DEFAULT '',
    item_id     bigint NOT NULL,
    change      text NOT NULL,
    status      text NOT NULL,
    params      jsonb NOT NULL,
    run_id      uuid,
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    reason      text
);

CREATE INDEX mirt_bank_history_scope_item ON mirt_bank_history (scope, item_id, changed_at);

-- Each run's drift watch: every operational item's free estimate, linked onto the bank's scale,
-- against its bank value, so that an item's drift reads as a trend over runs.
CREATE TABLE mirt_bank_drift (
    run_id      uuid NOT NULL,
    scope       text NOT NULL DEFAULT '',
    item_id     bigint NOT NULL,
    a           float8,
    b           float8,
    a_se        float8,
    b_se        float8,
    a_bank      float8 NOT NULL,
    b_bank      float8 NOT NULL,
    z_b         float8,
    z_a         float8,
    flagged     boolean NOT NULL,
    fitted_at   timestamptz NOT NULL,
    PRIMARY KEY (run_id, item_id)
);

CREATE INDEX mirt_bank_drift_scope_item ON mirt_bank_drift (scope, item_id, fitted_at);
