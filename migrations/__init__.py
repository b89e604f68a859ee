"""Alembic migrations of ssmbench's tables (shipped in the package so `ssmbench db upgrade` works
from a wheel, not only from a checkout)."""
