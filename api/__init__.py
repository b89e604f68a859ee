"""api: the FastAPI service, its HTTP client and the `ssmbench` command line. Imports orchestrator
and ssm."""
