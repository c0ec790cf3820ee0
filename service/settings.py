"""Server settings: one class, from the environment (``LSR_*``) or constructor arguments."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LSR_")

    index: str | None = Field(None, description="index directory built by `lsr index`")
    device: str | None = Field(None, description="query encoding device for siamese encoders")
    host: str = "127.0.0.1"
    port: int = 8000
    max_k: int = Field(1000, ge=1)
    max_query_chars: int = Field(4096, ge=1)
