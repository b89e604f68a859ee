"""The submit-time resource check against the nodes a cluster has."""

import pytest

from orchestrator.cluster import check_resources
from orchestrator.spec import SpecError, load_spec

NODES = [{"node_id": "a", "cpus": 4.0, "gpus": 0.0}, {"node_id": "b", "cpus": 8.0, "gpus": 1.0}]


def spec(cpus, gpus):
    return load_spec(f"name: r\ntasks: [delay]\nresources: {{cpus: {cpus}, gpus: {gpus}}}\n")


@pytest.mark.parametrize(("cpus", "gpus"), [(1, 0), (4, 0), (8, 1), (2, 0.25)])
def test_fitting_requests_pass(cpus, gpus):
    check_resources(spec(cpus, gpus), NODES)


@pytest.mark.parametrize(("cpus", "gpus"), [(16, 0), (1, 2), (9, 1)])
def test_requests_no_node_can_satisfy_are_rejected(cpus, gpus):
    with pytest.raises(SpecError, match="no node of the cluster") as info:
        check_resources(spec(cpus, gpus), NODES)
    assert info.value.path == "resources"
