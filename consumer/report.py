"""``python -m consumer report RUN_ID``: one self-contained HTML file about a calibration run.

For a psychometrician: settings and counts, fit statistics, the linking
constants with their standard errors, the anchors' reference against new
parameters (dropped anchors marked), the anchors' test characteristic
curves before and after linking, the distributions of the item parameters
and of the abilities, and every flagged item (not estimated, dropped
anchor). Plots are drawn by matplotlib as inline SVG, so the file stands
alone.
"""

from __future__ import annotations

import html
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from .errors import ConfigError, ServiceError
from .irt.model import ItemParameters


class RunNotFound(ServiceError):
    """No run with that id."""


@dataclass
class RunRecord:
    run_id: str
    status: str
    model_spec: dict
    fit_stats: dict
    summary: dict
    error: str | None
    items: list[tuple[int, dict]]
    theta: np.ndarray
    theta_se: np.ndarray


_ELSEWHERE = "a run of the demo is read with --demo"


def writable_output(name: str) -> Path:
    """``name`` as the report's path, or a ``ConfigError`` now, before any work, if it cannot be written."""
    path = Path(name).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"--output {name} is a directory", "name a file, for example report.html")
    if not folder.is_dir():
        raise ConfigError(f"--output {name}: directory {folder} does not exist", "create it or write elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"--output {name}: no permission to write there", "choose another file with -o")
    _pyplot()  # the plots need matplotlib: say so before the work, not after
    return path


def load_run(engine: sa.Engine, run_id: str) -> RunRecord:
    """The run's record and results, read only (nothing is created in a database without runs)."""
    from .db.engine import describe
    with engine.connect() as conn:
        if conn.execute(sa.text("SELECT to_regclass('mirt_fit_meta') IS NULL")).scalar():
            raise RunNotFound(f"no calibration run {run_id} in {describe(engine)}: it has no mirt_fit_meta table, "
                              "so no runs at all", f"check DATABASE_URL; {_ELSEWHERE}")
        row = conn.execute(sa.text(
            "SELECT run_id::text, status, model_spec, fit_stats, summary, error FROM mirt_fit_meta "
            "WHERE run_id::text = :r"), {"r": run_id}).first()
        if row is None:
            raise RunNotFound(f"no calibration run {run_id} in {describe(engine)}",
                              "list runs with: SELECT run_id, status, fitted_at FROM mirt_fit_meta ORDER BY "
                              f"started_at; {_ELSEWHERE}")
        items = [(int(r[0]), r[1]) for r in conn.execute(sa.text(
            "SELECT item_id, params FROM mirt_item_params_history WHERE run_id = CAST(:r AS uuid) ORDER BY item_id"),
            {"r": run_id})]
        abilities = conn.execute(sa.text(
            "SELECT theta, theta_se FROM mirt_ability_history WHERE run_id = CAST(:r AS uuid)"), {"r": run_id}).all()
    return RunRecord(run_id=row[0], status=row[1], model_spec=row[2] or {}, fit_stats=row[3] or {},
                     summary=row[4] or {}, error=row[5], items=items,
                     theta=np.array([a[0] for a in abilities], float),
                     theta_se=np.array([a[1] for a in abilities], float))


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the report needs matplotlib", "install the report extra: pip install -e '.[report]'") \
            from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _anchor_plots(plt, anchors: list[dict], constants: dict) -> list[str]:
    if not anchors:
        return []
    kept = np.array([not x["dropped"] for x in anchors])
    ref = ItemParameters(*(np.array([x["reference"][k] for x in anchors]) for k in ("a", "b", "c")))
    new = ItemParameters(*(np.array([x["new"][k] for x in anchors]) for k in ("a", "b", "c")))
    linked = new.on_scale(constants["slope"], constants["intercept"])
    figure, axes = plt.subplots(1, 2, figsize=(9, 4))
    for axis, key, label in ((axes[0], "b", "difficulty b"), (axes[1], "a", "discrimination a")):
        x, y = getattr(ref, key), getattr(linked, key)
        axis.scatter(x[kept], y[kept], s=18, label="kept")
        if (~kept).any():
            axis.scatter(x[~kept], y[~kept], s=50, marker="x", color="crimson", label="dropped (drift)")
        bounds = [min(x.min(), y.min()), max(x.max(), y.max())]
        axis.plot(bounds, bounds, color="grey", linewidth=0.8)
        axis.set_xlabel(f"reference {label}")
        axis.set_ylabel(f"new {label}, linked")
        axis.legend(fontsize=8)
    figure.suptitle("Anchors: reference against new parameters on the old scale")
    scatter = _svg(figure)

    grid = np.linspace(-4, 4, 161)
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(grid, ref.take(kept).probability(grid).sum(axis=1), label="reference", linewidth=2)
    axis.plot(grid, new.take(kept).probability(grid).sum(axis=1), label="new, before linking", linestyle="--")
    axis.plot(grid, linked.take(kept).probability(grid).sum(axis=1), label="new, after linking", linestyle=":")
    axis.set_xlabel("theta (old scale)")
    axis.set_ylabel("expected score on the kept anchors")
    axis.set_title("Test characteristic curves of the anchors")
    axis.legend(fontsize=8)
    return [scatter, _svg(figure)]


def _distribution_plots(plt, record: RunRecord) -> list[str]:
    plots = []
    if record.items:
        a = np.array([p.get("a", np.nan) for _, p in record.items])
        b = np.array([p.get("b", np.nan) for _, p in record.items])
        figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        axes[0].hist(a[np.isfinite(a)], bins=30)
        axes[0].set_xlabel("discrimination a")
        axes[1].hist(b[np.isfinite(b)], bins=30)
        axes[1].set_xlabel("difficulty b")
        figure.suptitle(f"Item parameters ({len(record.items)} items, linked scale)")
        plots.append(_svg(figure))
    if record.theta.size:
        figure, axis = plt.subplots(figsize=(6, 3.5))
        axis.hist(record.theta, bins=40)
        axis.set_xlabel("theta (EAP, linked scale)")
        axis.set_title(f"Abilities ({record.theta.size} students; mean SE {np.mean(record.theta_se):.3f})")
        plots.append(_svg(figure))
    return plots


def _table(rows: list[tuple], header: tuple | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header) if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else str(value)


def render(record: RunRecord) -> str:
    """The report's HTML."""
    plt = _pyplot()
    spec, summary = record.model_spec, record.summary
    constants = spec.get("linking_constants") or summary.get("linking_constants") or {}
    anchors = spec.get("anchor_table") or []
    counts = summary.get("counts", {})
    flagged = ([(q, "not estimated", reason) for q, reason in spec.get("excluded_items", {}).items()]
               + [(q, "anchor dropped", reason) for q, reason in spec.get("anchors_dropped", {}).items()]
               + [(q, "anchor skipped", reason) for q, reason in spec.get("anchors_skipped", {}).items()]
               + [(q, "item misfit", reason) for q, reason in spec.get("misfitting_items", {}).items()])
    sections = [
        f"<h1>Calibration run {html.escape(record.run_id)}</h1>",
        f"<p>Status <b>{html.escape(record.status)}</b>"
        + (f": {html.escape(record.error)}" if record.error else "") + "</p>",
        "<h2>Settings and counts</h2>",
        _table([(k, v) for k, v in spec.get("settings", {}).items()], ("setting", "value")),
        _table([("observations", counts.get("observations")), ("students", counts.get("users")),
                ("items answered", counts.get("items")), ("items estimated", counts.get("items_estimated")),
                ("anchors used", constants.get("n_anchors")), ("window", json.dumps(spec.get("window", {})))],
               ("count", "value")),
        "<h2>Fit</h2>",
        _table([(k, v) for k, v in record.fit_stats.items()], ("statistic", "value")),
        "<h2>Linking constants</h2>",
        _table([("method", constants.get("method"), ""),
                ("slope", constants.get("slope"), constants.get("slope_se")),
                ("intercept", constants.get("intercept"), constants.get("intercept_se"))],
               ("constant", "value", "standard error (jackknife)")),
        "<p>theta_old = slope &times; theta_new + intercept; b_old = slope &times; b_new + intercept; "
        "a_old = a_new / slope.</p>",
        *_anchor_plots(plt, anchors, constants),
        "<h2>Distributions</h2>",
        *_distribution_plots(plt, record),
        "<h2>Flagged items</h2>",
        _table(flagged, ("question", "flag", "reason")) if flagged else "<p>None.</p>",
    ]
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
             "text-align:left;font-size:90%}svg{max-width:100%;height:auto}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Calibration run {html.escape(record.run_id)}"
            f"</title><style>{style}</style></head><body>{''.join(sections)}</body></html>")
