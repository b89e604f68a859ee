"""Reparameterizations against their closed forms (REFERENCE.md §3)."""

import numpy as np
import pytest
import torch

from ssm.reparam import REPARAMS, make


def closed_form(name, w, a=1.0, b=0.5):
    return {
        "none": (w, np.ones_like(w)),
        "exp": (-np.exp(w), -np.exp(w)),
        "softplus": (-np.log1p(np.exp(w)), -1 / (1 + np.exp(-w))),
        "best": (-1 / (a * w**2 + b), 2 * a * w / (a * w**2 + b) ** 2),
    }[name]


@pytest.mark.parametrize("name", REPARAMS)
def test_forward_and_derivative_match_closed_form(name):
    w = np.linspace(-3, 3, 61)
    wt = torch.tensor(w, requires_grad=True)
    re = make(name)(wt)
    re.sum().backward()
    f, df = closed_form(name, w)
    np.testing.assert_allclose(re.detach().numpy(), f, rtol=1e-12)
    np.testing.assert_allclose(wt.grad.numpy(), df, rtol=1e-12)


@pytest.mark.parametrize(("a", "b"), [(1.0, 0.5), (0.3, 2.0), (7.0, 0.1)])
def test_best_with_parameters(a, b):
    w = np.linspace(-2, 2, 21)
    wt = torch.tensor(w, requires_grad=True)
    make("best", a=a, b=b)(wt).sum().backward()
    f, df = closed_form("best", w, a, b)
    np.testing.assert_allclose(make("best", a=a, b=b)(torch.tensor(w)).numpy(), f, rtol=1e-12)
    np.testing.assert_allclose(wt.grad.numpy(), df, rtol=1e-12)


@pytest.mark.parametrize("name", REPARAMS)
def test_inverse_then_forward_is_identity(name):
    re = -torch.tensor([1e-3, 0.1, 0.5, 1.0, 1.9], dtype=torch.float64)
    r = make(name)
    torch.testing.assert_close(r(r.inverse(re)), re, rtol=1e-12, atol=0)


def test_softplus_inverse_is_finite_for_large_values():
    re = -torch.tensor([50.0, 500.0], dtype=torch.float64)
    w = make("softplus").inverse(re)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(make("softplus")(w), re)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="valid: none, exp, softplus, best"):
        make("cubic")
    with pytest.raises(ValueError, match="takes no parameters"):
        make("exp", a=2.0)
    with pytest.raises(ValueError, match="a > 0 and b > 0"):
        make("best", a=-1.0)
    with pytest.raises(ValueError, match=r"choose reparam_b < 0\.25"):
        make("best", b=0.5).inverse(-torch.tensor([1.0, 4.0]))
    with pytest.raises(ValueError, match="needs Re λ < 0"):
        make("exp").inverse(torch.tensor([0.5]))


@pytest.mark.parametrize("b", [0.5, 0.3, 2.0])
def test_best_inverse_at_the_edge_of_its_range_is_zero(b):
    """f(0) = −1/b is in the range of 'best': its preimage is w = 0 (closed form), below it errors."""
    r = make("best", a=1.7, b=b)
    edge = torch.tensor([-1.0 / b], dtype=torch.float64)
    w = r.inverse(edge)
    assert w.item() == 0.0
    assert r(w).item() == pytest.approx(-1.0 / b, rel=1e-15)
    with pytest.raises(ValueError, match="choose reparam_b"):
        r.inverse(edge * (1 + 1e-9))
