"""PostgreSQL for the end-to-end tests: a fresh schema per test, dropped afterwards.

The server is SSMBENCH_TEST_PG (default 127.0.0.1:5432, database `test`, trust auth). Where it does
not answer the tests are skipped with the reason — except under CI, which must reach it (.ci/run starts
it), where they fail.
"""

from __future__ import annotations

import pytest
from postgres import postgres_schema, require_postgres  # tests/postgres.py


@pytest.fixture
def pg_url():
    """The URL of an empty schema of its own (search_path set through the URL's `options`)."""
    require_postgres()
    with postgres_schema("e2e", migrate=False) as url:
        yield url
