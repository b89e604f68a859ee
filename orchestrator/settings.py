"""Configuration from the environment (prefix SSMBENCH_), with defaults that need nothing set."""

from __future__ import annotations

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
    read_auth: bool = False

    def resolved_checkpoint_dir(self) -> Path:
        if self.checkpoint_dir is not None:
            return self.checkpoint_dir
        return Path(platformdirs.user_data_dir("ssmbench")) / "checkpoints"
