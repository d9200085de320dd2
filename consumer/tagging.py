"""``python -m consumer tag-anchors``: pick well-measured items of the latest calibration as anchors.

The candidates come from the latest succeeded run's item parameters (on the
linked scale, with their standard errors), of one scope: the anchors of an
item bank come from that bank's own calibration and anchor only it. A scope with a bank
(``bank_admin``) has no anchors to tag: its operational items hold its scale. Existing anchors keep their tag
and their reference parameters: this command only adds. The chosen items
get the tag "anchor" in ``question.meta->'tags'`` and their parameters in
``question.meta->'irt'`` (with the run id), all in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import sqlalchemy as sa

from .anchors import AnchorCriteria, choose_anchor_candidates
from .db import bank as bank_db
from .db import queries
from .db import tagging as tagging_db
from .errors import ServiceError
from .scope import Scope

log = logging.getLogger("consumer.tagging")


class NothingToTag(ServiceError):
    """There is no succeeded calibration to take anchors from."""


@dataclass
class TaggingResult:
    run_id: str
    model: str
    chosen: list[dict] = field(default_factory=list)
    ruled_out: dict[str, int] = field(default_factory=dict)
    existing_anchors: int = 0
    tagged: int = 0
    dry_run: bool = False


def tag_anchors(engine: sa.Engine, criteria: AnchorCriteria, scope: Scope, *,
                dry_run: bool = False) -> TaggingResult:
    with engine.begin() as conn:
        if bank_db.has_bank(conn, scope):
            raise NothingToTag(f"{scope.item_bank} holds the scale: its operational items are the anchors, and anchors "
                               "tagged from a run would chain that run's estimation error into the next",
                               "nothing to tag; see the bank's items with python -m consumer bank show")
        latest = tagging_db.latest_succeeded_run(conn, scope)
        if latest is None:
            raise NothingToTag(f"no succeeded calibration run{'' if scope.whole_bank else ' of ' + scope.label} "
                               "to take anchors from",
                               "run a calibration first (python -m consumer calibrate)")
        run_id, model = latest
        params = [(item_id, p) for item_id, _, p in queries.run_item_params(conn, run_id)]
        anchors, odd = tagging_db.questions_not_taggable(conn, scope)
        present = tagging_db.existing_question_ids(conn, [item_id for item_id, _ in params])
        ids = np.array([item_id for item_id, _ in params], dtype=np.int64)
        column = lambda key: np.array([np.nan if p.get(key) is None else p[key] for _, p in params], float)
        excluded = anchors | odd | tagging_db.run_misfits(conn, run_id) | (set(ids.tolist()) - present)
        chosen, ruled_out = choose_anchor_candidates(ids, column("a"), column("b"), column("b_se"),
                                                     column("n_responses"), excluded, criteria)
        by_id = dict(params)
        tagged_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        irt = {int(q): {"a": by_id[q]["a"], "b": by_id[q]["b"], "c": by_id[q].get("c", 0.0),
                        "a_se": by_id[q].get("a_se"), "b_se": by_id[q].get("b_se"), "model": model,
                        "run_id": run_id, "tagged_at": tagged_at} for q in chosen.tolist()}
        result = TaggingResult(run_id=run_id, model=model, ruled_out=ruled_out, existing_anchors=len(anchors),
                               dry_run=dry_run,
                               chosen=[{"question_id": q, "n_responses": by_id[q].get("n_responses"), **v}
                                       for q, v in irt.items()])
        if odd:
            log.warning("%d questions have meta.tags that is not a JSON array; they are left alone: %s",
                        len(odd), ", ".join(str(i) for i in sorted(odd)[:20]))
        if not dry_run and irt:
            result.tagged = tagging_db.tag_anchors(conn, irt)
    log.info("%s %d new anchors of %s from run %s (%s); %d existing anchors kept as they are",
             "dry run: would tag" if dry_run else "tagged", len(irt), scope.label, run_id, model, len(anchors))
    return result


def format_table(result: TaggingResult) -> str:
    lines = [f"{'question':>10} {'a':>7} {'b':>7} {'b_se':>6} {'responses':>9}"]
    for row in result.chosen:
        lines.append(f"{row['question_id']:>10} {row['a']:>7.3f} {row['b']:>7.3f} "
                     f"{(row['b_se'] or float('nan')):>6.3f} {row['n_responses'] or 0:>9}")
    ruled = "; ".join(f"{n} {reason}" for reason, n in result.ruled_out.items() if n)
    lines.append(f"{len(result.chosen)} {'would be tagged' if result.dry_run else 'tagged'} from run "
                 f"{result.run_id}; ruled out: {ruled or 'none'}")
    return "\n".join(lines)
