"""``pip install`` of the project gives the client without the container's dependencies: a built wheel and an
editable checkout, each in a fresh virtual environment, used from outside the repository. The container's
dependencies are the ``container`` extra, and the image's pinned requirements cover them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINER_ONLY = {"numba", "flask", "gunicorn", "llvmlite", "werkzeug", "scipy", "orjson"}
SOURCES = ("pyproject.toml", "README.md", "algorithm", "container", "serve", "fmwals")


def _pins(*files: str) -> dict[str, str]:
    """name -> version of every ``name==version`` line (extras left out: pip refuses them as constraints)."""
    pins = {}
    for name in files:
        for line in (ROOT / name).read_text().splitlines():
            found = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
            if found:
                pins[found.group(1).lower()] = found.group(2)
    return pins


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_client_dependencies_leave_the_container_out_and_every_dependency_is_pinned():
    project = _project()
    client, container = set(project["dependencies"]), set(project["optional-dependencies"]["container"])
    assert not client & CONTAINER_ONLY and {"numba", "flask", "gunicorn", "scipy", "orjson"} <= container
    image = _pins("requirements.txt")
    assert container <= {name.lower() for name in image}  # the Dockerfile installs requirements.txt
    assert client <= set(_pins("requirements.txt", "requirements-dev.txt"))


def _pip(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


CLIENT_CHECK = """
import importlib.util, io, json, sys
import numpy as np
import fmwals
from fmwals.serializers import RecordDeserializer, RecordSerializer
body = RecordSerializer().serialize(np.eye(3, dtype=np.float32))
records = RecordDeserializer().deserialize(io.BytesIO(body), "application/x-recordio-protobuf")
fm = fmwals.FactorizationMachines("role", 1, "ml.c5.xlarge", num_factors=4, predictor_type="regressor")
try:
    import fmwals.inprocess
    inprocess = "imported"
except ModuleNotFoundError as err:
    inprocess = str(err)
print(json.dumps({"file": fmwals.__file__, "records": len(records), "hyperparameters": fm.hyperparameters(),
                  "loaded": sorted({"numba", "flask", "gunicorn"} & set(sys.modules)),
                  "installed": [m for m in ("numba", "flask", "gunicorn") if importlib.util.find_spec(m)],
                  "inprocess": inprocess}))
"""


def _check_client(python: Path, cwd: Path) -> dict:
    done = subprocess.run([str(python), "-c", CLIENT_CHECK], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    assert found["records"] == 3 and found["hyperparameters"]["num_factors"] == "4"
    assert found["loaded"] == [] and found["installed"] == []
    assert "pip install 'fm-wals-image[container]'" in found["inprocess"]
    return found


@pytest.mark.slow
def test_wheel_and_checkout_install_the_light_client(tmp_path):
    checkout = tmp_path / "checkout"  # a copy: building writes build/ and *.egg-info next to the sources
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            checkout.mkdir(exist_ok=True)
            shutil.copy2(source, checkout / name)
    _pip("wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(checkout), cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("fm_wals_image-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    _pip("--python", str(python), "install", "-q", "--no-deps", str(wheel), cwd=tmp_path)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in
                                   _pins("requirements.txt", "requirements-dev.txt").items()))
    _pip("--python", str(python), "install", "-q", "-c", str(constraints), *_project()["dependencies"],
         cwd=tmp_path)
    installed = {p["name"].lower() for p in json.loads(_pip("--python", str(python), "list", "--format=json",
                                                          cwd=tmp_path))}
    assert "fm-wals-image" in installed and not installed & CONTAINER_ONLY

    elsewhere = tmp_path / "notebook"  # the user's own directory: no sources next to it
    elsewhere.mkdir()
    assert _check_client(python, elsewhere)["file"].startswith(str(venv))

    _pip("--python", str(python), "uninstall", "-q", "-y", "fm-wals-image", cwd=tmp_path)
    _pip("--python", str(python), "install", "-q", "--no-deps", "-e", str(checkout), cwd=tmp_path)
    assert _check_client(python, elsewhere)["file"] == str(checkout / "fmwals" / "__init__.py")
