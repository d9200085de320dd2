-- The DIF screen of a run (MIRT_DIF_GROUP_COLUMN set): one row per focal group and tested item.
-- Every difference is focal minus reference on the reference group's scale, so a negative
-- mh_delta or signed_difference means the item is harder for the focal group (docs/psychometrics.md).
CREATE TABLE mirt_dif (
    run_id            uuid NOT NULL,
    scope             text NOT NULL DEFAULT '',
    item_id           bigint NOT NULL,
    reference_group   text NOT NULL,
    focal_group       text NOT NULL,
    n_reference       integer NOT NULL,
    n_focal           integer NOT NULL,
    mh_alpha          float8,
    mh_delta          float8,
    mh_delta_se       float8,
    mh_chi2           float8,
    mh_p              float8,
    ets_class         text CHECK (ets_class IN ('A', 'B', 'C')),
    wald_chi2         float8,
    wald_df           float8,
    wald_p            float8,
    wald_p_adjusted   float8,
    signed_difference float8,
    rmsd_dif          float8,
    signed_area       float8,
    unsigned_area     float8,
    reference_a       float8,
    reference_b       float8,
    focal_a           float8,
    focal_b           float8,
    anchor            boolean NOT NULL,
    flagged           boolean NOT NULL,
    PRIMARY KEY (run_id, focal_group, item_id)
);

CREATE INDEX mirt_dif_flagged ON mirt_dif (scope, item_id) WHERE flagged;
