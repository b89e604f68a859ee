"""ssm: the state space model package — initializations, reparameterizations, kernels, layers,
models, data, training and diagnostics. Imports torch, numpy, pydantic and platformdirs (its core
dependencies); scipy, scikit-learn, pillow and triton only where used (pyproject.toml's extras)."""

from importlib import metadata

try:
    __version__ = metadata.version("ssmbench")  # pyproject.toml is the one place it is written
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"
