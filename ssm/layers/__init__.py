"""SSM layers: `S4` (DPLR), `S4D` (diagonal, convolutional), `S5` (MIMO, scan).

All take (B, L, H) and return (B, L, H); all share the constructor of `SSMLayer`.
"""

from .base import DiscreteSystem, Eigenvalues, SSMLayer, frozen_state_tensors, sorted_eigenvalues
from .s4 import S4
from .s4d import S4D
from .s5 import S5

LAYERS: dict[str, type[SSMLayer]] = {"s4": S4, "s4d": S4D, "s5": S5}


def make_layer(name: str, d_model: int, **kwargs) -> SSMLayer:
    """The layer called `name` ("s4", "s4d", "s5")."""
    if name not in LAYERS:
        raise ValueError(f"unknown layer {name!r}; valid: {', '.join(LAYERS)}")
    return LAYERS[name](d_model, **kwargs)


__all__ = [
    "LAYERS",
    "S4",
    "S4D",
    "S5",
    "DiscreteSystem",
    "Eigenvalues",
    "SSMLayer",
    "frozen_state_tensors",
    "make_layer",
    "sorted_eigenvalues",
]
