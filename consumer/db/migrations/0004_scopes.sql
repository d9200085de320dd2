-- Calibration scopes: one scale per item bank. Every row a run writes is kept per
-- scope, named by the value of MIRT_SCOPE_KEY in question.meta (say 'math'). The
-- empty string is the whole bank, as every run wrote before scopes existed, so every
-- existing row keeps its meaning: a run, an item's parameters, an ability, all of
-- the bank-wide scale.
ALTER TABLE mirt_fit_meta ADD COLUMN scope text NOT NULL DEFAULT '';

CREATE INDEX mirt_fit_meta_scope_status_fitted_at ON mirt_fit_meta (scope, status, fitted_at DESC);

ALTER TABLE mirt_item_params ADD COLUMN scope text NOT NULL DEFAULT '';

ALTER TABLE mirt_item_params_history ADD COLUMN scope text NOT NULL DEFAULT '';

-- A student has one ability per scope.
ALTER TABLE mirt_ability ADD COLUMN scope text NOT NULL DEFAULT '';

ALTER TABLE mirt_ability DROP CONSTRAINT mirt_ability_pkey;

ALTER TABLE mirt_ability ADD PRIMARY KEY (user_id, scope);

ALTER TABLE mirt_ability_history ADD COLUMN scope text NOT NULL DEFAULT '';

-- The run lock and its fencing token are per scope: lock_key is the scope's key.
ALTER TABLE mirt_run_fence ADD COLUMN scope text NOT NULL DEFAULT '';
