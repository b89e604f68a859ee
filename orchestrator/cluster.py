"""Joining the Ray cluster, and what it offers: a summary for `status`/`health`, and the submit-time
check that a sweep's per-trial resources fit on at least one node (else its trials pend forever)."""

from __future__ import annotations

import logging
import os
from typing import Any

import ray

from .spec import SpecError, SweepSpec


def connect_ray(num_cpus: int | None = None, *, logging_level: int = logging.INFO) -> None:
    """Join the cluster at RAY_ADDRESS, else start a local Ray with this machine's CPUs and GPUs;
    Ray's own log lines below `logging_level` are not shown (the CLI passes ERROR unless -v).

    A local Ray is always a new one (never a cluster another process started on this machine) and
    picks free ports for itself (never Redis's 6379)."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging_level)
    else:
        ray.init(
            address="local",  # a new Ray of our own, never another process's cluster on this machine
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging_level,
        )


def cluster_summary() -> dict[str, Any]:
    """Nodes alive, and CPUs/GPUs in total and in use. Requires a connected Ray."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total, available = ray.cluster_resources(), ray.available_resources()
    return {
        "nodes": [
            {
                "node_id": n["NodeID"],
                "address": n.get("NodeManagerAddress"),
                "cpus": n["Resources"].get("CPU", 0.0),
                "gpus": n["Resources"].get("GPU", 0.0),
            }
            for n in nodes
        ],
        "cpus_total": total.get("CPU", 0.0),
        "cpus_in_use": total.get("CPU", 0.0) - available.get("CPU", 0.0),
        "gpus_total": total.get("GPU", 0.0),
        "gpus_in_use": total.get("GPU", 0.0) - available.get("GPU", 0.0),
    }


def check_resources(spec: SweepSpec, nodes: list[dict[str, Any]] | None = None) -> None:
    """Raise SpecError unless some node has the CPUs and GPUs one trial asks for.

    `nodes` defaults to the connected cluster's (`cluster_summary()["nodes"]`). An autoscaling
    cluster may add larger nodes later; this check reflects the nodes that exist now.
    """
    nodes = cluster_summary()["nodes"] if nodes is None else nodes
    need = spec.resources
    if any(n["cpus"] >= need.cpus and n["gpus"] >= need.gpus for n in nodes):
        return
    biggest = max(nodes, key=lambda n: (n["gpus"], n["cpus"]), default={"cpus": 0, "gpus": 0})
    raise SpecError(
        f"no node of the cluster can run a trial asking for {need.cpus:g} CPUs and {need.gpus:g} GPUs "
        f"(largest node: {biggest['cpus']:g} CPUs, {biggest['gpus']:g} GPUs)",
        "resources",
    )
