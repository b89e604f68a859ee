"""Sweeps' results as flat tables (`ssmbench export`): one row per trial, per epoch, or per trial ×
snapshot × layer of the stored diagnostics, written as CSV, JSON lines or Parquet.

The rows come from the report's loader (`orchestrator.report.data`): the same trials the leaderboard
and the report count (completed, with a test metric; a run reused by two sweeps once). Every row
carries the trial's configuration as flat dotted columns (`model.init`, `optim.lr`, `task.name`,
`task.options.max_len`, `seed`, …), so a table loads into pandas with no post-processing.

Arrays (per-channel memory capacity, eigenvalues as [re, im] pairs, memory functions) are lists in
JSON lines and Parquet, JSON text in CSV (`json.loads` per cell reads them back).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from .report.data import load_diagnostic_arrays, load_report_data, load_trial_configs
from .tracking import flat_config

WHATS = ("results", "epochs", "diagnostics")
FORMATS = ("csv", "parquet", "jsonl")
EXPORT_INSTALL = "pip install 'ssmbench[export]'"
SNAPSHOTS = ("init", "best", "end")  # the moments `TrialResult.diagnostics["arrays"]` keeps


class ExportError(ValueError):
    """The export cannot be made (unknown sweep, what or format, a missing package); one line."""


def export_rows(session: Session, sweep_ids: Sequence[int], what: str) -> list[dict[str, Any]]:
    """The rows of `what` ("results", "epochs" or "diagnostics") for the sweeps, in the report's
    order (task, then configuration, then seed). Raises ExportError for an unknown `what`, and the
    report's ReportError (a ValueError) for an unknown sweep or one with no completed trial, and
    ExportError for diagnostics when no trial stored them."""
    if what not in WHATS:
        raise ExportError(f"unknown --what {what!r}: expected one of {', '.join(WHATS)}")
    data = load_report_data(session, sweep_ids, with_leaderboards=False)
    trials = [(group, trial) for group in data.groups for trial in group.trials]
    configs = load_trial_configs(session, [trial.trial_id for _, trial in trials])
    names = {s.id: s.name for s in data.sweeps}
    arrays = load_diagnostic_arrays(session, [t.run_id for _, t in trials]) if what == "diagnostics" else {}
    rows: list[dict[str, Any]] = []
    for group, trial in trials:
        head = {
            "sweep_id": trial.sweep_id,
            "sweep_name": names[trial.sweep_id],
            "trial_id": trial.trial_id,
            "run_id": trial.run_id,
            "label": group.label,
            "group_key": group.group_key,
            **flat_config(configs[trial.trial_id]),
        }
        if what == "results":
            rows.append(
                {
                    **head,
                    "metric": group.metric,
                    "test_metric": trial.test_metric,
                    "val_metric": trial.val_metric,
                    "best_epoch": trial.best_epoch,
                }
            )
        elif what == "epochs":
            rows.extend({**head, **epoch} for epoch in trial.epochs)
        else:
            rows.extend({**head, **row} for row in diagnostics_rows(arrays.get(trial.run_id)))
    if what == "diagnostics" and not rows:
        raise ExportError(
            f"no diagnostic arrays stored for sweep {', '.join(map(str, sweep_ids))}: "
            "the spec's diagnostics.every (epochs between diagnostics; 0 disables them) records them"
        )
    return rows


def diagnostics_rows(arrays: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per snapshot ("init", "best", "end") and SSM layer of a trial's stored diagnostic
    arrays (`ssm.diagnostics.layer_arrays`): the arrays as they are, `memory_capacity_mean` (the
    mean over channels of the memory capacity, unstable channels left out) and the relative drift
    since the init snapshot of the same layer (`ssm.diagnostics.eigenvalue_drift`: `drift_re_lambda`,
    `drift_im_lambda`, `drift_dt`, `drift_abs_Ab`; `eigenvalue_drift_mean` = mean |λ − λ₀|)."""
    from ssm.diagnostics import eigenvalue_drift

    if not arrays:
        return []
    initial = arrays.get("init") or []
    rows = []
    for snapshot in SNAPSHOTS:
        layers = arrays.get(snapshot) or []
        drifts = (
            eigenvalue_drift([_spectrum(x) for x in initial], [_spectrum(x) for x in layers])["layers"]
            if len(initial) == len(layers) and all("eigenvalues" in x for x in [*initial, *layers])
            else [{}] * len(layers)
        )
        for index, (layer, drift) in enumerate(zip(layers, drifts, strict=True)):
            capacity = [c for c in _leaves(layer.get("memory_capacity")) if c is not None]
            rows.append(
                {
                    "snapshot": snapshot,
                    "layer": index,
                    "memory_capacity_mean": sum(capacity) / len(capacity) if capacity else None,
                    **{
                        f"drift_{name}": drift.get(name)
                        for name in ("re_lambda", "im_lambda", "dt", "abs_Ab")
                    },
                    "eigenvalue_drift_mean": drift.get("mean"),
                    **{
                        key: layer.get(key)
                        for key in ("memory_capacity", "eigenvalues", "dt", "Ab", "memory_function")
                    },
                }
            )
    return rows


def write_table(rows: list[dict[str, Any]], out: Path, fmt: str) -> None:
    """Write the rows to `out` atomically (a temporary file beside it, then renamed): a reader never
    sees half a file, and a failed export leaves the previous file in place. Columns are the union
    of the rows' keys in first-seen order; a missing value is empty (CSV) or null."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown --format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ModuleNotFoundError:
            raise ExportError(f"--format parquet needs pyarrow: {EXPORT_INSTALL}") from None
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = Path(out)
    fd, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.absolute().parent)
    os.close(fd)
    try:
        {"csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet}[fmt](rows, columns, temporary)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; an export is an ordinary file
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- the formats ---------------------------------------------------------------------------------


def _write_csv(rows: list[dict[str, Any]], columns: list[str], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()})


def _write_jsonl(rows: list[dict[str, Any]], columns: list[str], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:  # every line has every column, so pandas sees one schema
            f.write(json.dumps({c: row.get(c) for c in columns}, allow_nan=False) + "\n")


def _write_parquet(rows: list[dict[str, Any]], columns: list[str], path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = {c: [row.get(c) for row in rows] for c in columns}
    for column, values in table.items():
        kinds = {isinstance(v, list | dict) for v in values if v is not None}
        if kinds == {True, False}:  # a column both scalar and list: Parquet needs one type, JSON text
            table[column] = [json.dumps(v) if v is not None else None for v in values]
    pq.write_table(pa.table(table) if rows else pa.table({c: [] for c in columns}), path)


def _spectrum(layer: dict[str, Any]) -> dict[str, Any]:
    """A stored layer's arrays as `eigenvalue_drift` takes them: complex λ and Ab from [re, im] pairs."""
    import torch

    def complex_of(pairs):
        values = torch.tensor(pairs, dtype=torch.float64)
        return torch.complex(values[..., 0], values[..., 1])

    spectrum = {"lam": complex_of(layer["eigenvalues"])}
    if layer.get("Ab") is not None:
        spectrum["Ab"] = complex_of(layer["Ab"])
    if layer.get("dt") is not None:
        spectrum["dt"] = torch.tensor(layer["dt"], dtype=torch.float64)
    return spectrum


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


__all__ = ["FORMATS", "WHATS", "ExportError", "export_rows", "flat_config", "write_table"]
