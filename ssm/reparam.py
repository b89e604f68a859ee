"""Reparameterizations of the eigenvalues' real part (Wang & Li, "StableSSM"; REFERENCE.md §3).

Re λ = f(w) for a trainable w. `forward` is f, `inverse` maps a given initial Re λ to the w that
produces it. Only `none` lets Re λ cross into the right half-plane: instability is what the study
measures, so nothing is clamped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Reparam:
    """f: w ↦ Re λ and its inverse. Subclasses are stateless apart from their hyperparameters."""

    name: str = ""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inverse(self, re: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return self.forward(w)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Identity(Reparam):
    """f(w) = w: no stability guarantee."""

    name = "none"

    def forward(self, w):
        return w

    def inverse(self, re):
        return re.clone()


class _NegatedPositive(Reparam):
    """f(w) = −g(w) for an increasing g onto (0, ∞): `positive` is g, `positive_inverse` g⁻¹, so
    Re λ < 0 always and `inverse` needs Re λ < 0."""

    @staticmethod
    def positive(w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def positive_inverse(y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, w):
        return -self.positive(w)

    def inverse(self, re):
        _require_negative(re, self.name)
        return self.positive_inverse(-re)


class Exp(_NegatedPositive):
    """f(w) = −exp(w): the S4/S4D default."""

    name = "exp"
    positive = staticmethod(torch.exp)
    positive_inverse = staticmethod(torch.log)


class Softplus(_NegatedPositive):
    """f(w) = −softplus(w) = −log(1 + eʷ)."""

    name = "softplus"
    positive = staticmethod(F.softplus)

    @staticmethod
    def positive_inverse(y):
        # softplus⁻¹(y) = log(eʸ − 1) = y + log(1 − e⁻ʸ), the second form does not overflow for large y.
        return y + torch.log(-torch.expm1(-y))


class Best(Reparam):
    """f(w) = −1 / (a w² + b), a > 0, b > 0: the "best" stable reparameterization of StableSSM.

    Its range is [−1/b, 0), with f(0) = −1/b: `inverse(−1/b)` is 0, and an initial Re λ < −1/b
    cannot be represented and `inverse` says so.
    """

    name = "best"

    def __init__(self, a: float = 1.0, b: float = 0.5):
        if not (a > 0 and b > 0):
            raise ValueError(f"'best' reparameterization needs a > 0 and b > 0, got a={a}, b={b}")
        self.a, self.b = float(a), float(b)

    def forward(self, w):
        return -1.0 / (self.a * w * w + self.b)

    def inverse(self, re):
        _require_negative(re, self.name)
        lowest = float(re.min())
        if lowest < -1.0 / self.b:
            raise ValueError(
                f"'best' reparameterization with b={self.b} represents Re λ in [−{1 / self.b:g}, 0), "
                f"but the initialization has Re λ = {lowest:g}; choose reparam_b < {-1 / lowest:.4g}"
            )
        # At re = −1/b the radicand is 0 up to rounding (−1/(−1/b) need not be b exactly): clamp it.
        return torch.sqrt(((-1.0 / re - self.b) / self.a).clamp_min(0.0))

    def __repr__(self):
        return f"Best(a={self.a:g}, b={self.b:g})"


def _require_negative(re: torch.Tensor, name: str) -> None:
    if bool((re >= 0).any()):
        raise ValueError(f"{name!r} reparameterization needs Re λ < 0, got max Re λ = {float(re.max()):g}")


REPARAMS: dict[str, type[Reparam]] = {cls.name: cls for cls in (Identity, Exp, Softplus, Best)}
"""The reparameterizations by config name: the one registry that `make` and `ssm.config` read."""


def make(name: str, **params: float) -> Reparam:
    """The reparameterization called `name`; `best` takes `a` and `b` (defaults 1 and 0.5)."""
    if name not in REPARAMS:
        raise ValueError(f"unknown reparameterization {name!r}; valid: {', '.join(REPARAMS)}")
    if name != "best" and params:
        raise ValueError(f"reparameterization {name!r} takes no parameters, got {sorted(params)}")
    unknown = set(params) - {"a", "b"}
    if unknown:
        raise ValueError(f"'best' takes parameters a and b, got unknown {sorted(unknown)}")
    return REPARAMS[name](**params)


__all__ = ["REPARAMS", "Best", "Exp", "Identity", "Reparam", "Softplus", "make"]
