"""trainers/ is layered: a module imports only from its own folder or the folders below it."""

import ast
from pathlib import Path

import pytest

TRAINERS = Path(__file__).resolve().parents[1] / "trainers"
# Bottom to top; the scripts at trainers/ itself are the top.
LAYERS = ["records", "engine", "instruments", "extend", "run", ""]


def layer(module: str) -> int:
    """The layer of `tapeloop.trainers.X...`: X's folder, or the scripts' layer."""
    part = module.split(".")[2] if module.count(".") >= 2 else ""
    return LAYERS.index(part) if part in LAYERS else len(LAYERS) - 1


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tapeloop.trainers"):
            if node.module == "tapeloop.trainers":
                yield from (f"tapeloop.trainers.{a.name}" for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("tapeloop.trainers"))


MODULES = sorted(p for p in TRAINERS.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(TRAINERS)))
def test_no_module_imports_from_a_layer_above(path):
    own = layer("tapeloop." + ".".join(path.relative_to(TRAINERS.parent).with_suffix("").parts))
    upward = [m for m in imports(path) if layer(m) > own]
    assert not upward, f"{path.relative_to(TRAINERS)} ({LAYERS[own] or 'scripts'}) imports {upward}"


def test_every_folder_is_a_layer():
    folders = {p.name for p in TRAINERS.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS[:-1]), folders


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from tapeloop.trainers.run import controller\n")
    assert layer(next(imports(bad))) > layer("tapeloop.trainers.engine.loop")


def test_tests_import_tapeloop_as_users_do():
    """The repository root is not on the tests' path: `trainers` and `data` are tapeloop's
    subpackages, not top-level packages (`make test` runs `pytest`, not `python -m pytest`)."""
    import importlib
    import sys

    for name in ("trainers", "data"):
        assert name not in sys.modules or not hasattr(sys.modules[name], "records")
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(name if name == "trainers" else "data.mnist")
