"""All configuration, from environment variables prefixed ``HPO_`` (one lazily built object)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Environment: HPO_DATABASE_URL, HPO_DATA_DIR, HPO_ARTIFACT_DIR, HPO_API_TOKEN, ..."""

    model_config = SettingsConfigDict(env_prefix="HPO_", extra="ignore")

    database_url: str = "sqlite:///hpo.db"  # SQLAlchemy URL; postgresql+psycopg2://... in production
    data_dir: Path = Path("data")  # dataset paths in specs are relative to this root
    artifact_dir: Path = Path("artifacts")  # per-trial checkpoints live here
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "hpo")  # decoded datasets
    allow_download: bool = False  # may workers download torchvision's CIFAR-10?
    api_token: SecretStr | None = None  # when set, the API requires "Authorization: Bearer <token>"
    api_url: str = "http://127.0.0.1:8000"  # where the `hpo study` CLI finds the API
    dashboard_url: str = "http://127.0.0.1:8080"  # base of optuna-dashboard links in API answers
    heartbeat_interval: int = Field(default=10, ge=1)  # seconds between a running trial's heartbeats
    heartbeat_grace: int = Field(default=60, ge=2)  # seconds without a beat before a trial counts as stale
    stale_check_interval: float = Field(default=15.0, gt=0)  # how often the API sweeps for stale trials

    @field_validator("database_url")
    @classmethod
    def _explicit_driver(cls, url: str) -> str:
        """A libpq-style ``postgres://`` or ``postgresql://`` URL names its driver: psycopg2."""
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg2://" + url.removeprefix(prefix)
        return url


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
