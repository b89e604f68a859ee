"""Report data as a JSON document and back: how the service hands `ReportData` to a client that
draws the report itself (`GET /api/v1/reports/data`, `ssmbench report --api URL`).

    report_data_from_json(json.loads(json.dumps(report_data_to_json(data)))) == data

The document is strict JSON: a non-finite float (a diverged run's NaN loss, an infinite metric) is
`{"$float": "nan"}` (or "inf", "-inf"), so the drawing sees the same numbers as from the database;
timestamps are ISO 8601 text; the leaderboards' keys, sweep ids, are text as JSON keys are.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from typing import Any

import numpy as np

from .data import ConfigGroup, ReportData, SweepInfo, TrialRecord

_FLOAT = "$float"


def report_data_to_json(data: ReportData) -> dict[str, Any]:
    """`data` as plain JSON values (see the module's doc)."""
    return _encode(dataclasses.asdict(data))


def report_data_from_json(document: dict[str, Any]) -> ReportData:
    """The `ReportData` of a `report_data_to_json` document. ValueError (one line) when it is not one."""
    try:
        doc = _decode(document)
        sweeps = [
            SweepInfo(**{**s, "created_at": _when(s["created_at"]), "finished_at": _when(s["finished_at"])})
            for s in doc["sweeps"]
        ]
        groups = [
            ConfigGroup(**{**g, "trials": [TrialRecord(**t) for t in g["trials"]]}) for g in doc["groups"]
        ]
        leaderboards = {int(k): v for k, v in doc["leaderboards"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"not a report data document: {type(err).__name__}: {err}") from None
    return ReportData(sweeps=sweeps, groups=groups, leaderboards=leaderboards)


def arrays_from_diagnostics(document: dict[str, Any]) -> dict[str, Any] | None:
    """The diagnostic arrays of one trial as `load_diagnostic_arrays` gives them ({snapshot: one
    {quantity: nested lists} per layer}), from its `GET /trials/{id}/diagnostics` answer; None when
    it recorded none."""
    snapshots = document.get("snapshots") or {}
    if not snapshots:
        return None
    return {
        name: [{k: v for k, v in layer.items() if k != "layer"} for layer in layers]
        for name, layers in snapshots.items()
    }


def json_safe(value: Any) -> Any:
    """`value` as strict JSON values where the number need not survive: NaN and ±inf become None,
    numpy scalars Python numbers, tuples lists (summary.json, the claims `study_runs` keeps)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if value.keys() == {_FLOAT}:
            return float(value[_FLOAT])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
