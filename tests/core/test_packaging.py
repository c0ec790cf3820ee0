"""The library's shape: one import name, a core that imports none of the applications, no torch for the index and
the kernel, a wheel that holds only ``lsr`` (and the default encoder), and entry points for the commands."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
APPS = {"training": "lsr.training", "indexer": "lsr.indexer", "service": "lsr.service"}


def modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_package_list_covers_every_folder():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                relative = init.parent.relative_to(ROOT / folder).parts
                found.add(".".join((name, *relative)))
    assert set(config["packages"]) == found


def test_the_core_imports_no_application_and_the_applications_not_each_other():
    offenders = []
    for path in modules(ROOT / "lsr"):
        bad = {n for n in imported_names(path) if n.split(".")[0] in APPS or
               any(n == full or n.startswith(full + ".") for full in APPS.values())}
        offenders += [(str(path.relative_to(ROOT)), n) for n in bad]
    for folder, full in APPS.items():
        for path in modules(ROOT / folder):
            for name in imported_names(path):
                if name.split(".")[0] in APPS:  # top-level `training` etc.: exists in a checkout, not in the wheel
                    offenders.append((str(path.relative_to(ROOT)), name))
                for other in set(APPS.values()) - {full}:
                    if name == other or name.startswith(other + "."):
                        offenders.append((str(path.relative_to(ROOT)), name))
    assert not offenders, offenders


def test_the_index_the_kernel_and_the_engine_import_without_torch():
    code = (
        "import sys\n"
        "import numpy as np\n"
        "import lsr, lsr.index, lsr.index.kernel, lsr.engine, lsr.retrievers.native, lsr.evaluation, lsr.fusion\n"
        "from lsr import Engine, Index, SparseBatch\n"
        "vectors = SparseBatch.from_rows([(np.array([1, 3]), np.array([0.5, 2.0])), (np.array([3]), np.array([1.0]))])\n"
        "engine = Engine(Index.build(vectors=vectors, ids=['a', 'b'], vocab_size=8))\n"
        "hits = engine.search_vectors(SparseBatch.from_rows([(np.array([3]), np.array([1.0]))]), k=2)[0].hits\n"
        "assert [h.id for h in hits] == ['a', 'b'], hits\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "heavy: []"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = out.glob("lsr-*.whl")
    return found


def test_the_wheel_holds_lsr_alone_with_its_default_encoder(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"lsr"}
    for required in ("lsr/training/trainer.py", "lsr/indexer/cli.py", "lsr/service/app.py", "lsr/index/kernel.py",
                     "lsr/models/inference-free-default/model.safetensors",
                     "lsr/models/inference-free-default/idf.json", "lsr/py.typed"):
        assert required in names, required
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "lsr = lsr.cli:main" in text and "index = lsr.indexer.cli:register" in text


def test_the_unpacked_wheel_runs_outside_the_checkout(wheel, tmp_path):
    """From another directory, with the wheel's files first on the path: `python -m lsr` lists every command and
    the default encoder is found inside the package."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("LSR_DEFAULT_ENCODER", None)
    done = subprocess.run([sys.executable, "-m", "lsr", "--help"], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for command in ("index", "idf", "train", "eval", "serve"):
        assert command in done.stdout
    code = ("import lsr, lsr.service.app; from lsr.encoders import default_encoder_directory as d; "
            "print(lsr.__file__); print(d())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    package, default = done.stdout.split()
    assert package.startswith(str(site)) and default.startswith(str(site)) and (Path(default) / "idf.json").exists()
