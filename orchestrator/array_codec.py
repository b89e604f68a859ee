"""Numeric arrays as compact bytes for the database, and back: float32 little-endian, byte-shuffled,
zlib-compressed. Shuffling (all first bytes of the values, then all second bytes, …) puts the
slowly varying sign and exponent bytes side by side, which zlib compresses well: 25% smaller than
zlib alone on the diagnostics of an S4D model (bench/RESULTS.md, "Diagnostics storage").

float32 is what the diagnostics carry: `ssm.diagnostics.layer_arrays` rounds to 7 significant
digits, float32's precision. NaN survives the round trip (an unstable channel's memory function).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

DTYPE = np.dtype("<f4")
ZLIB_LEVEL = 6


def encode_array(values: Any) -> tuple[list[int], bytes]:
    """(shape, data) of `values` — an array or nested lists of numbers, None read as NaN."""
    array = np.asarray(np.array(values, dtype=np.float64), dtype=DTYPE)
    shuffled = np.ascontiguousarray(array.reshape(-1).view(np.uint8).reshape(-1, DTYPE.itemsize).T)
    return list(array.shape), zlib.compress(shuffled.tobytes(), ZLIB_LEVEL)


def decode_array(shape: list[int], data: bytes) -> np.ndarray:
    """The float32 array that `encode_array` stored as (shape, data)."""
    planes = np.frombuffer(zlib.decompress(data), dtype=np.uint8).reshape(DTYPE.itemsize, -1)
    return np.ascontiguousarray(planes.T).view(DTYPE).reshape(shape)


def json_lists(array: np.ndarray) -> Any:
    """Nested lists of floats with float32's shortest decimal form (7 significant digits, as
    `ssm.diagnostics.layer_arrays` gives them), NaN as None — JSON has no NaN."""
    flat = [None if math.isnan(x) else float(f"{x:.7g}") for x in array.reshape(-1).tolist()]
    return np.array(flat, dtype=object).reshape(array.shape).tolist()
