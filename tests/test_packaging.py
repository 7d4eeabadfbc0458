"""Installed (not editable), tapeloop is one package and leaves a user's top-level names alone."""

import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO


def test_a_project_with_its_own_data_and_trainers_runs_an_example(tmp_path):
    pytest.importorskip("sklearn", reason="pip install 'tapeloop[examples]'")
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--target", str(site), str(REPO)], capture_output=True, text=True,
        timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    packages = [p.name for p in site.iterdir() if (p / "__init__.py").is_file()]
    assert packages == ["tapeloop"]  # no top-level data or trainers
    project = tmp_path / "userproj"
    for package in ("data", "trainers"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(f"OWNER = 'user {package}'\n")
    shutil.copy(REPO / "examples" / "digits.py", project / "run_example.py")
    (project / "check.py").write_text(
        "import data, trainers, tapeloop\n"
        "assert data.OWNER == 'user data' and trainers.OWNER == 'user trainers'\n"
        "print(tapeloop.__file__)\n")
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(site), str(project)])}
    check = subprocess.run([sys.executable, "check.py"], cwd=project, capture_output=True,
                           text=True, env=env, timeout=120)
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.strip().startswith(str(site))  # the installed copy, not the checkout
    run = subprocess.run([sys.executable, "run_example.py", "--epochs=1", "--logdir=logs",
                          "--run_name=digits"], cwd=project, capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (project / "logs" / "digits" / "results.json").is_file()
