"""ssm: the state space model package — initializations, reparameterizations, kernels, layers,
models, data, training and diagnostics. Imports torch/numpy/scipy/triton only."""

__version__ = "0.1.0"
