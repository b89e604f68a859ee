"""End-to-end tests: real processes (Ray nodes, `ssmbench serve`) talking over this machine's network.

A package, so that its test modules (tests/e2e/test_cluster.py) do not clash with same-named modules
of other test directories under pytest's default import mode."""
