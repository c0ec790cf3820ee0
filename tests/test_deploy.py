"""The deployment files: compose.yaml validated by docker-compose itself, and the Dockerfiles' contract."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose_binary() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def test_compose_file_is_valid():
    binary = compose_binary()
    if binary is None:
        if os.environ.get("LSR_REQUIRE_COMPOSE") == "1":  # CI installs docker-compose and sets this
            pytest.fail("docker-compose is not installed, but LSR_REQUIRE_COMPOSE=1")
        pytest.skip("docker-compose is not installed")
    env = {**os.environ, "LSR_SHARED": str(ROOT.parent / "shared")}
    result = subprocess.run([*binary, "-f", str(ROOT / "compose.yaml"), "--profile", "index", "config"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    api, indexer = config["services"]["api"], config["services"]["indexer"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert indexer["profiles"] == ["index"] and "--out" in indexer["command"]
    published = api["ports"][0]
    assert (published.get("host_ip") if isinstance(published, dict) else published.split(":")[0]) == "127.0.0.1"
    # the API serves a data directory; the job builds one collection in it
    out = indexer["command"][indexer["command"].index("--out") + 1]
    assert api["environment"]["LSR_DATA"] == out.rsplit("/", 1)[0] and "LSR_INDEX" not in api["environment"]


def test_the_milvus_overlay_is_valid_and_points_the_api_at_milvus():
    """compose.milvus.yaml (Milvus standalone: etcd, MinIO, milvus) over compose.yaml; its images cannot be pulled
    here, so docker-compose validates it and the tests run the same backend on Milvus Lite."""
    binary = compose_binary()
    if binary is None:
        if os.environ.get("LSR_REQUIRE_COMPOSE") == "1":
            pytest.fail("docker-compose is not installed, but LSR_REQUIRE_COMPOSE=1")
        pytest.skip("docker-compose is not installed")
    env = {**os.environ, "LSR_SHARED": str(ROOT.parent / "shared")}
    result = subprocess.run([*binary, "-f", str(ROOT / "compose.yaml"), "-f", str(ROOT / "compose.milvus.yaml"),
                             "--profile", "index", "config"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"etcd", "minio", "milvus", "api", "indexer"} <= set(services)
    api, indexer = services["api"], services["indexer"]
    assert api["environment"]["LSR_BACKEND"] == "milvus" and api["environment"]["LSR_MILVUS_URI"] == \
        "http://milvus:19530"
    command = indexer["command"]
    assert command[command.index("--backend") + 1] == "milvus" and command[command.index("--milvus-uri") + 1] == \
        api["environment"]["LSR_MILVUS_URI"]
    assert api["build"]["args"]["LSR_EXTRAS"] == "milvus" and indexer["profiles"] == ["index"]
    published = services["milvus"]["ports"][0]
    assert (published.get("host_ip") if isinstance(published, dict) else published.split(":")[0]) == "127.0.0.1"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_take_a_base_image_and_ship_the_default_encoder(name):
    text = (ROOT / "docker" / name).read_text()
    assert text.startswith("#") and "ARG BASE_IMAGE=" in text and "FROM ${BASE_IMAGE}" in text
    assert "COPY lsr/ lsr/" in text and "default_encoder_directory" in text  # the encoder ships as package data
    assert "USER lsr" in text and "/readyz" in text
