-- Fencing for the run lock. The session advisory lock says who may run; it is lost
-- silently when its connection drops, and another run may then take it. So whoever
-- takes the lock also takes the next fencing token here, and a run's write
-- transaction locks this row and checks that the token is still its own: a run that
-- lost the lock can never write over the run that took it.
CREATE TABLE mirt_run_fence (
    lock_key  bigint PRIMARY KEY,
    token     bigint NOT NULL,
    run_id    uuid NOT NULL,
    taken_at  timestamptz NOT NULL DEFAULT now()
);
