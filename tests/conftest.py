"""Shared test setup: deterministic torch, fp32 default, no Ray left running between modules."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module", autouse=True)
def _no_ray_left_behind():
    """A test module that started Ray without shutting it down (`ssmbench run` in-process) would make
    the next module's `ray.init` fail; shut it down after every module."""
    yield
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
