"""ssm: the state space model package — initializations, reparameterizations, kernels, layers,
models, data, training and diagnostics. Imports torch, numpy, pydantic and platformdirs (its core
dependencies); scipy, scikit-learn, pillow and triton only where used (pyproject.toml's extras)."""

__version__ = "0.1.0"
