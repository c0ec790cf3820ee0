"""Server settings: one class, read from (highest first) constructor arguments, ``LSR_*`` environment variables,
a settings file (``LSR_CONFIG_FILE``: YAML or JSON), then the defaults below."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from lsr.config_files import read_mapping
from lsr.errors import MissingFile
from lsr.retrievers import backend_names, backend_options

CONFIG_FILE_ENV = "LSR_CONFIG_FILE"


class _FileSource(PydanticBaseSettingsSource):
    """Settings from the YAML/JSON file named by ``LSR_CONFIG_FILE`` (unknown keys are an error)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get(CONFIG_FILE_ENV)
        if not path:
            return {}
        if not Path(path).exists():
            raise MissingFile(f"{CONFIG_FILE_ENV}={path}: the settings file does not exist")
        return read_mapping(path, self.settings_cls.model_fields, "server settings")


class KeyEntry(BaseModel):
    """One API key: what it may do (``read`` < ``write`` < ``admin``) and, optionally, on which collections."""

    model_config = ConfigDict(extra="forbid")
    key: SecretStr = Field(..., min_length=16, description="the bearer token (at least 16 characters)")
    scope: Literal["read", "write", "admin"] = "read"
    collections: list[str] | None = Field(None, description="the collections it may use (default: all)")
    name: str | None = Field(None, max_length=64, description="what logs and errors call it (never the key)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LSR_", extra="forbid")

    index: str | None = Field(None, description="index directory built by `lsr index` (served as the collection "
                                                "`default`)")
    data: str | None = Field(None, description="data directory: every index under it is a collection named by its "
                                               "folder; collections are created and dropped over the API there")
    encoders: dict[str, str] = Field(default_factory=dict, description="encoder folders a new collection may name, "
                                                                       "by name ({\"medical\": \"/models/x\"}; "
                                                                       "`default` is the shipped one)")
    device: str | None = Field(None, description="query encoding device for siamese and dense encoders")
    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes (each memory-maps the same index)")
    api_key: SecretStr | None = Field(None, description="if set, every route but /healthz and /readyz needs "
                                                        "`Authorization: Bearer <key>` (an admin key; see keys)")
    keys: list[KeyEntry] = Field(default_factory=list, description="API keys with scopes: [{key, scope: read|write|"
                                                                    "admin, collections: [...], name}] (LSR_KEYS, "
                                                                    "JSON); any key set: every route needs one")
    max_k: int = Field(1000, ge=1, description="deepest rank a request may reach: k + offset")
    max_query_chars: int = Field(4096, ge=1, description="longest query, in characters")
    max_batch: int = Field(256, ge=1, description="most queries in one /search/batch call")
    max_body_bytes: int = Field(1_048_576, ge=1, description="largest request body")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS (empty: CORS off)")
    backend: str = Field("native", description="sparse search backend: native (lsr's kernel), lucene (Pyserini over "
                                               "the index's lucene/ part), milvus (the index's Milvus collection), "
                                               "or any registered backend")
    backend_options: dict[str, Any] = Field(default_factory=dict, description="options of a plugin backend's open() "
                                                                              "(LSR_BACKEND_OPTIONS, JSON)")
    milvus_uri: str | None = Field(None, description="milvus backend: a Milvus Lite file (.db) or a server URI "
                                                     "(default: the one recorded in the index's milvus.json)")
    milvus_collection: str | None = Field(None, description="milvus backend: the collection (default: the recorded one)")
    milvus_drop_ratio: Annotated[float, AllowInfNan(False)] = Field(
        0.0, ge=0.0, lt=1.0, description="milvus backend, APPROXIMATE above 0: Milvus's drop_ratio_search (a Milvus "
                                         "server only; responses say exact: false)")
    pruning: Literal["blockmax", "exhaustive"] = Field("blockmax", description="native top-k: block-max (exact) "
                                                                               "or exhaustive")
    prune_alpha: Annotated[float, AllowInfNan(False)] = Field(
        1.0, gt=0.0, le=1.0, description="APPROXIMATE below 1: skip blocks whose bound x alpha < the k-th score "
                                         "(responses say exact: false)")
    query_cut: int = Field(0, ge=0, description="APPROXIMATE when > 0: keep only the heaviest N query terms")
    read_only: bool = Field(False, description="refuse the write routes (403)")
    write_timeout: Annotated[float, AllowInfNan(False)] = Field(
        10.0, ge=0.0, le=3600.0, description="seconds a write waits for another writer's lock before a 503")
    refresh_interval: Annotated[float, AllowInfNan(False)] = Field(
        1.0, gt=0.0, le=3600.0, description="seconds between checks for a generation another process published")
    merge: bool = Field(True, description="merge segments in the background after writes, as the tiered policy asks")

    def open_options(self) -> dict:
        """What the chosen backend takes from the settings: the options it declares (``Capabilities.options``)."""
        return backend_options(self.backend, self, self.backend_options)

    def writer_options(self) -> dict:
        """What the index's commit listeners take from the settings (a Milvus mirror's URI)."""
        from lsr.index.listeners import listener_options  # (lsr.index imports numpy and numba: not in the supervisor)

        return listener_options(self)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in backend_names():
            raise ValueError(f"unknown backend {value!r}; known: {', '.join(backend_names())}")
        return value

    @model_validator(mode="after")
    def _distinct_keys(self):
        secrets = [k.key.get_secret_value() for k in self.keys]
        if self.api_key is not None:
            secrets.append(self.api_key.get_secret_value())
        if len(set(secrets)) != len(secrets):
            raise ValueError("two API keys are the same; each key needs its own secret (its scope could not be told)")
        return self

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value):
        return None if value in ("", None) else value  # LSR_API_KEY= (compose's default) means no key

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, env_settings, _FileSource(settings_cls), dotenv_settings, file_secret_settings
