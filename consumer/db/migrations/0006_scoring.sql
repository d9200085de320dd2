-- The scoring menu (MIRT_SCORING): each ability records the method that scored it. Rows written
-- before this migration were all EAP.
ALTER TABLE mirt_ability ADD COLUMN method text NOT NULL DEFAULT 'EAP';

ALTER TABLE mirt_ability_history ADD COLUMN method text NOT NULL DEFAULT 'EAP';

-- An ML estimate of an all-correct or all-wrong pattern is infinite: it is written as the end of
-- the scale's range (theta = +-6 on the calibration scale, carried to the reported scale), with
-- no standard error (NULL). Every other row keeps a standard error.
ALTER TABLE mirt_ability ALTER COLUMN theta_se DROP NOT NULL;

ALTER TABLE mirt_ability_history ALTER COLUMN theta_se DROP NOT NULL;

-- The population's mean and SD from each set of plausible values a run drew (MIRT_PLAUSIBLE_VALUES):
-- group statistics, per run, never a student's score. Combine the draws by Rubin's rules
-- (docs/psychometrics.md, Plausible values); the run record holds the combined values.
CREATE TABLE mirt_plausible_values (
    run_id      uuid NOT NULL,
    scope       text NOT NULL DEFAULT '',
    draw        integer NOT NULL,
    n_students  integer NOT NULL,
    mean        float8 NOT NULL,
    sd          float8 NOT NULL,
    fitted_at   timestamptz NOT NULL,
    PRIMARY KEY (run_id, draw)
);

CREATE INDEX mirt_plausible_values_scope ON mirt_plausible_values (scope, fitted_at);
