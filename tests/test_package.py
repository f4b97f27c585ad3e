"""One installed package (issue 15): what `pip install .` puts on a user's path, and the import layers.

The wheel is built once per session (`pip wheel --no-deps .`, ~10 s) and unpacked: that is exactly the
tree `pip install .` installs, so its `top_level.txt` and its imports are checked as users get them
(the editable install of a checkout maps folders and hides the layout from import tools).
"""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("apache_beam", "tensorflow", "keras")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package as `pip install .` lays it out: the built wheel, unpacked."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
                   check=True)
    (wheel,) = out.glob("gazecrop-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def python(code: str, *, cwd: Path, path: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1", "HOME": str(cwd)}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_wheel_installs_one_top_level_package(installed):
    (info,) = installed.glob("gazecrop-*.dist-info")
    assert (info / "top_level.txt").read_text().split() == ["gazecrop"]
    tops = {p.name for p in installed.iterdir()}
    assert tops == {"gazecrop", info.name}
    for sub in ("model", "transforms", "pipeline", "tools"):
        assert (installed / "gazecrop" / sub / "__init__.py").exists(), sub
    assert (installed / "gazecrop" / "model" / "weights" / "default.weights.h5").stat().st_size > 0
    assert not (installed / "gazecrop" / "setup.py").exists()


@pytest.mark.parametrize("where", ["wheel", "checkout"])
def test_gazecrop_imports_beside_files_named_model_pipeline_transforms(tmp_path, installed, where):
    """Generic module names in the user's folder shadow nothing of gazecrop."""
    for name in ("model", "pipeline", "transforms", "tools"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n")
    code = ("import gazecrop, gazecrop.model, gazecrop.model.loading, gazecrop.transforms, gazecrop.pipeline.options,"
            " gazecrop.search; print('gazecrop imported', flush=True); import model")
    done = python(code, cwd=tmp_path, path=installed if where == "wheel" else None)
    # gazecrop imported whole; only the last `import model` reaches the user's own file (raising on purpose)
    assert done.stdout.strip() == "gazecrop imported", done.stderr[-2000:]
    assert "the user's own model.py was imported" in done.stderr


def test_the_beam_free_layer_imports_neither_beam_nor_tensorflow(tmp_path):
    code = ("import sys, gazecrop, gazecrop.decode, gazecrop.encode, gazecrop.paths, gazecrop.search, gazecrop.records;"
            "import gazecrop.api;"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r})))")
    done = python(code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_model_layer_and_the_crop_command_import_no_beam(tmp_path):
    """The model layer needs Keras but no Beam; `gazecrop crop` runs no Beam job, so it does not pay Beam's
    seconds of import either. One interpreter for both: each is checked before the other is imported."""
    code = ("import sys, gazecrop.model.loading; print('apache_beam' in sys.modules, 'keras' in sys.modules);"
            "import gazecrop.pipeline.crop_command; print('apache_beam' in sys.modules)")
    done = python(code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True", "False"]


def test_imports_point_one_way(installed):
    """import-linter's contracts (.importlinter): layers tools > pipeline > transforms > api > model > core,
    and the core free of Beam and TensorFlow, the model free of Beam, imports inside functions included."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), str(REPO / ".importlinter")], cwd=installed, capture_output=True,
                          text=True, env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout[-3000:]
    assert "broken" not in done.stdout.lower().split("contracts:")[-1] or "0 broken" in done.stdout.lower()
