"""Labels of configuration groups, as the leaderboard shows them: what a group is, in the words of
its stored config, and only as much as tells it apart from the other groups on the board."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Trial


class LabelledGroup(Protocol):
    """What a label reads of a group besides its stored config: a leaderboard `Aggregate`, a
    report's `ConfigGroup`."""

    group_key: str
    layer: str
    init: str
    reparam: str
    train_eigenvalues: bool


def group_labels(
    session: Session, groups: Iterable[LabelledGroup], trial_ids: Mapping[str, int]
) -> dict[str, str]:
    """A label per configuration group: layer · init · reparam (with a, b for `best`) ·
    trained/frozen, then `field=value` for every other model or optim field on which the groups
    differ; floats to 3 significant digits. Labels are unique: groups that their stored configs (or
    the rounding) do not tell apart get the start of their group key. `trial_ids`: a trial of each
    group (by group key) whose stored config names it; a group without one is named by its columns."""
    columns = {g.group_key: g for g in groups}
    configs: dict[str, dict[str, Any]] = {group_key: {} for group_key in columns}
    if trial_ids:
        found = session.execute(
            select(Trial.group_key, Trial.config).where(Trial.id.in_(set(trial_ids.values())))
        )
        for group_key, config in found:
            configs[group_key] = _fields(config)

    # A field is shown where it tells groups apart; a and b are already in a `best` group's reparam.
    shown = {"layer", "init", "reparam", "train_eigenvalues"}
    in_reparam = {"reparam_a", "reparam_b"}
    keys = list(dict.fromkeys(key for fields in configs.values() for key in fields))
    varying = []
    for key in keys:
        if key in shown:
            continue
        values = {
            _comparable(fields.get(key, _ABSENT))
            for group_key, fields in configs.items()
            if not (key in in_reparam and columns[group_key].reparam == "best")
        }
        if len(values) > 1:
            varying.append(key)
    labels = {}
    for group_key, fields in configs.items():
        group = columns[group_key]
        reparam = group.reparam
        if reparam == "best":
            reparam = f"best(a={_format(fields.get('reparam_a'))},b={_format(fields.get('reparam_b'))})"
        parts = [group.layer, group.init, reparam, "trained" if group.train_eigenvalues else "frozen"]
        for key in varying:
            if group.reparam == "best" and key in in_reparam:
                continue
            parts.append(f"{key}={_format(fields.get(key))}")
        labels[group_key] = " · ".join(parts)

    seen: dict[str, int] = defaultdict(int)
    for label in labels.values():
        seen[label] += 1
    for group_key, label in labels.items():
        if seen[label] > 1:
            labels[group_key] = f"{label} · {group_key[:8]}"
    return labels


_ABSENT = object()


def _comparable(value: Any) -> Any:
    """A hashable stand-in for a config value; 1, 1.0 and True stay apart."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return (type(value), value)


def _fields(config: dict[str, Any] | str | None) -> dict[str, Any]:
    """The model and optim fields of a stored TrialConfig, flat: `d_state`, `lr`, and
    `optim.x` where a name is in both sections."""
    if isinstance(config, str):  # a JSON column read as text by some drivers
        config = json.loads(config)
    sections = {name: (config or {}).get(name) or {} for name in ("model", "optim")}
    both = set(sections["model"]) & set(sections["optim"])
    return {
        (f"{name}.{key}" if key in both else key): value
        for name, section in sections.items()
        for key, value in section.items()
    }


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):  # 3 significant digits: 0.135, 1.42e-3 (small and large: an exponent)
        if value != 0 and math.isfinite(value) and not 1e-2 <= abs(value) < 1e4:
            mantissa, _, exponent = f"{value:.2e}".partition("e")
            return f"{float(mantissa):g}e{int(exponent)}"
        return f"{value:.3g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)
