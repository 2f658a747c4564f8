"""All configuration, from environment variables prefixed ``HPO_`` (one lazily built object)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Environment: HPO_DATABASE_URL, HPO_DATA_DIR, HPO_ARTIFACT_DIR, HPO_API_TOKEN, ..."""

    model_config = SettingsConfigDict(
        env_prefix="HPO_", extra="ignore", hide_input_in_errors=True
    )  # no secrets in errors

    database_url: str = "sqlite:///hpo.db"  # SQLAlchemy URL; postgresql+psycopg2://... in production
    # A direct connection for migrations, when HPO_DATABASE_URL goes through PgBouncer in transaction
    # mode: a migration holds a session-level advisory lock, which needs one server connection throughout.
    migrate_database_url: str | None = None
    data_dir: Path = Path("data")  # dataset paths in specs are relative to this root
    artifact_dir: Path = Path("artifacts")  # per-trial checkpoints live here
    keep_weights: int | None = Field(default=None, ge=1)  # final weights of only the best K trials per study
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "hpo")  # decoded datasets
    allow_download: bool = False  # may workers download torchvision's CIFAR-10?
    api_token: SecretStr | None = None  # when set, the API requires "Authorization: Bearer <token>"
    viewer_token: SecretStr | None = None  # read-only: may browse the API and the dashboard, never write
    api_url: str = "http://127.0.0.1:8000"  # where the `hpo study` CLI finds the API
    dashboard_url: str | None = None  # base of dashboard links in API answers; default: api_url (it serves /dashboard)
    heartbeat_interval: int = Field(default=10, ge=1)  # seconds between a running trial's heartbeats
    heartbeat_grace: int = Field(default=60, ge=2)  # seconds without a beat before a trial counts as stale
    stale_check_interval: float = Field(default=15.0, gt=0)  # how often the API sweeps for stale trials
    notify_url: str | None = None  # a receiver of every event of every study (service/notify), JSON
    notify_secret: SecretStr | None = None  # signs every notification: X-HPO-Signature, HMAC-SHA256 of the body
    notify_allow: str | None = None  # hosts or CIDRs notifications may reach (default: public addresses only)

    @field_validator("database_url", "migrate_database_url")
    @classmethod
    def _explicit_driver(cls, url: str | None) -> str | None:
        """A libpq-style ``postgres://`` or ``postgresql://`` URL names its driver: psycopg2."""
        if url is None:
            return None
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg2://" + url.removeprefix(prefix)
        return url

    @field_validator("api_token")
    @classmethod
    def _not_blank(cls, token: SecretStr | None) -> SecretStr | None:
        """A blank admin token would silently turn authentication off: refuse it."""
        if token is not None and not token.get_secret_value().strip():
            raise ValueError(
                f"HPO_API_TOKEN is set but blank: unset it, or set a token of at least {MIN_TOKEN_LENGTH} characters"
            )
        return token

    @field_validator("viewer_token")
    @classmethod
    def _blank_viewer_is_none(cls, token: SecretStr | None) -> SecretStr | None:
        """A blank viewer token grants nothing (docker compose passes unset variables as blanks)."""
        return token if token is not None and token.get_secret_value().strip() else None

    @model_validator(mode="after")
    def _viewer_beside_an_admin(self) -> Settings:
        if self.viewer_token is not None and self.api_token is None:
            raise ValueError("HPO_VIEWER_TOKEN needs HPO_API_TOKEN: without it the API is open to everyone")
        if self.viewer_token is not None and self.viewer_token == self.api_token:
            raise ValueError("HPO_VIEWER_TOKEN must differ from HPO_API_TOKEN (the viewer may not write)")
        return self

    @property
    def migration_url(self) -> str:
        """Where migrations run: HPO_MIGRATE_DATABASE_URL, else HPO_DATABASE_URL."""
        return self.migrate_database_url or self.database_url

    def short_tokens(self) -> list[str]:
        """The token variables set to fewer than MIN_TOKEN_LENGTH characters (worth a warning)."""
        tokens = {"HPO_API_TOKEN": self.api_token, "HPO_VIEWER_TOKEN": self.viewer_token}
        return [name for name, token in tokens.items() if token and len(token.get_secret_value()) < MIN_TOKEN_LENGTH]


class SettingsError(Exception):
    """The environment holds an invalid HPO_* setting; the message names each one."""


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use; SettingsError if invalid."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = "HPO_" + "_".join(str(part) for part in error["loc"]).upper() if error["loc"] else ""
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"  {variable}: {message}" if variable and variable not in message else f"  {message}")
        raise SettingsError("invalid environment:\n" + "\n".join(problems)) from None
