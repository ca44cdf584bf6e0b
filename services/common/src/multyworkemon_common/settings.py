"""Settings from the environment and from mounted files, the one place services read config.

A value comes, strongest first, from: the environment, a file named by `<NAME>_FILE`, a file named
`<name>` in `$SECRETS_DIR` (a mounted Kubernetes Secret), then the default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_SECRETS_DIR = "/run/secrets/multyworkemon"


class _FileSettingsSource(PydanticBaseSettingsSource):
    """Reads `<NAME>_FILE` paths and files in the secrets folder."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = (field.alias or field_name).upper()
        explicit = os.environ.get(f"{name}_FILE")
        folder = Path(os.environ.get("SECRETS_DIR", DEFAULT_SECRETS_DIR))
        for path in (Path(explicit) if explicit else None, folder / name.lower(), folder / name):
            if path is not None and path.is_file():
                return path.read_text(encoding="utf-8").strip(), field_name, False
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[key] = value
        return values


class ServiceSettings(BaseSettings):
    """What every service needs; each service subclasses it with its own fields."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    host: str = "0.0.0.0"
    port: int = 8000
    log_level: str = "info"
    # Shared secret on every call between services; a service refuses to start without it...
    service_token: SecretStr = SecretStr("")
    # ...unless this says an open API is intended (a developer's machine, never a deployment).
    allow_insecure: bool = False
    # Largest request body and query string accepted, so a huge input gets a 413, not memory pressure.
    max_body_bytes: int = 1_048_576
    max_query_bytes: int = 65_536
    # Seconds in-flight requests get to finish after SIGTERM.
    shutdown_timeout: float = 20.0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FileSettingsSource(settings_cls)


class DatabaseSettings(ServiceSettings):
    """Services that keep state in PostgreSQL."""

    database_url: SecretStr = SecretStr("postgresql://postgres@localhost:5432/multyworkemon")
    database_pool_max: int = 20
    database_timeout: float = 5.0
    # Migrations run at start under an advisory lock (also in Kubernetes); off: `python -m <service> migrate` runs them.
    migrate_on_start: bool = True
