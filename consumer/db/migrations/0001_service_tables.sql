-- The service's own tables. The platform's attempt and question are never touched here.

CREATE TABLE mirt_fit_meta (
    run_id       uuid PRIMARY KEY,
    request_id   text,
    status       text NOT NULL CHECK (status IN ('running', 'succeeded', 'skipped', 'failed')),
    model_spec   jsonb NOT NULL DEFAULT '{}'::jsonb,
    fit_stats    jsonb NOT NULL DEFAULT '{}'::jsonb,
    error        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    fitted_at    timestamptz
);

CREATE INDEX mirt_fit_meta_request_id ON mirt_fit_meta (request_id);
CREATE INDEX mirt_fit_meta_status_fitted_at ON mirt_fit_meta (status, fitted_at DESC);

-- Current parameters of each calibrated item (upserted by item_id = question.id).
CREATE TABLE mirt_item_params (
    item_id    bigint PRIMARY KEY,
    model      text NOT NULL,
    params     jsonb NOT NULL,
    run_id     uuid NOT NULL REFERENCES mirt_fit_meta (run_id),
    fitted_at  timestamptz NOT NULL
);

-- Every run's item parameters, readable by run id after later runs replace the current rows.
CREATE TABLE mirt_item_params_history (
    run_id     uuid NOT NULL REFERENCES mirt_fit_meta (run_id),
    item_id    bigint NOT NULL,
    model      text NOT NULL,
    params     jsonb NOT NULL,
    fitted_at  timestamptz NOT NULL,
    PRIMARY KEY (run_id, item_id)
);

-- Current ability of each student (upserted by user_id = attempt.student_id, as text).
CREATE TABLE mirt_ability (
    user_id    text PRIMARY KEY,
    theta      double precision NOT NULL,
    theta_se   double precision NOT NULL,
    run_id     uuid NOT NULL REFERENCES mirt_fit_meta (run_id),
    fitted_at  timestamptz NOT NULL
);

CREATE TABLE mirt_ability_history (
    run_id     uuid NOT NULL REFERENCES mirt_fit_meta (run_id),
    user_id    text NOT NULL,
    theta      double precision NOT NULL,
    theta_se   double precision NOT NULL,
    fitted_at  timestamptz NOT NULL,
    PRIMARY KEY (run_id, user_id)
);
