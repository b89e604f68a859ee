"""Configuration from the environment (prefix SSMBENCH_), with defaults that need nothing set."""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    path = Path(platformdirs.user_data_dir("ssmbench")) / "ssmbench.db"
    return f"sqlite:///{path}"


class Settings(BaseSettings):
    """`SSMBENCH_DATABASE_URL`, `SSMBENCH_DATA_DIR`, `SSMBENCH_CHECKPOINT_DIR`, … ; Ray reads `RAY_ADDRESS`."""

    model_config = SettingsConfigDict(env_prefix="SSMBENCH_", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    data_dir: Path | None = None
    checkpoint_dir: Path | None = Field(
        None,
        description="where trials checkpoint each epoch (shared filesystem on a cluster); None: the data dir",
    )
    api_url: str = "http://127.0.0.1:8000"
    token: str | None = None
    max_trials_per_sweep: int = Field(10_000, ge=1)
    max_retries: int = Field(2, ge=0, description="re-runs of a trial whose worker or node died")
    heartbeat_seconds: float = Field(5.0, gt=0)
    stale_after_seconds: float = Field(
        60.0, gt=0, description="a running trial without a heartbeat this long is lost"
    )
    lease_seconds: float = Field(30.0, gt=0)
    autoscaler_demand: bool | None = Field(
        None,
        description="ask the Ray autoscaler for the pending trials' resources "
        "(`ray.autoscaler.sdk.request_resources`); None: when joining a cluster (RAY_ADDRESS)",
    )
    max_demand_bundles: int = Field(
        1000, ge=1, description="at most this many trials' resources asked of the autoscaler at once"
    )
    read_auth: bool = False

    def asks_autoscaler(self) -> bool:
        """Whether the scheduler tells the autoscaler what pending trials need (`autoscaler_demand`)."""
        if self.autoscaler_demand is not None:
            return self.autoscaler_demand
        return bool(os.environ.get("RAY_ADDRESS"))

    def resolved_checkpoint_dir(self) -> Path:
        if self.checkpoint_dir is not None:
            return self.checkpoint_dir
        return Path(platformdirs.user_data_dir("ssmbench")) / "checkpoints"


_URL_WITH_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:[^\s/@]*@\S*")


def masked_url(url: str) -> str:
    """`url` with its password replaced by `***`, for every message and log line that names a
    database or service URL (SQLAlchemy's rendering; a URL it cannot parse is masked by pattern)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^\s/@:]*:)[^\s/@]*@", r"\1***@", url)
    return parsed.render_as_string(hide_password=True) if parsed.password else url


def masked_text(text: str) -> str:
    """`text` (an error message, a log line) with the password of every URL in it masked."""
    return _URL_WITH_PASSWORD.sub(lambda match: masked_url(match.group(0)), text)
