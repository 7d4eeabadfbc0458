"""Run directories: what a run may write to, and whether it may continue what is there."""

import json
import os
from pathlib import Path

from tapeloop.trainers import checkpoints
from tapeloop.trainers.config import Config


class SetupError(ValueError):
    """The run cannot start as configured; the message says why and what to do."""


class RunDirError(SetupError):
    """The run directory cannot be used; the message says why and what to do."""


def check_run_dir(run_dir: Path, *, overwrite: bool, resume: bool = False,
                  config: Config | None = None) -> bool:
    """Refuses a run directory that is a file, unwritable, or holds a run it cannot continue.

    Returns:
      True when `run_dir` holds a checkpointed run with a compatible config that
      `resume` allows continuing; False when it is to be started fresh.

    Raises:
      RunDirError: with the reason and the way out.
    """
    run_dir = Path(run_dir)
    for parent in (run_dir, *run_dir.parents):
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(f"{parent} is a file, not a directory")
            if not _writable(parent):
                raise RunDirError(f"{parent} is not writable")
            break
    if not run_dir.is_dir() or not any(run_dir.iterdir()) or overwrite:
        return False
    if not resume:
        raise RunDirError(f"{run_dir} already holds a run: pass --overwrite to replace it, "
                          "or choose another --run_name")
    if checkpoints.latest_step(run_dir) is None or not (run_dir / "config.json").is_file():
        raise RunDirError(f"{run_dir} holds a run without a checkpoint to resume from: "
                          "pass --overwrite to replace it, or choose another --run_name")
    if config is not None:
        saved = json.loads((run_dir / "config.json").read_text())
        differing = config.differences(saved)
        if differing:
            raise RunDirError(
                f"{run_dir} holds a run with other settings, so it cannot be resumed: "
                + ", ".join(f"--{k} was {saved.get(k)!r}, now {getattr(config, k)!r}"
                            for k in differing)
                + " (pass --overwrite to start it again, or choose another --run_name)")
    return True


def check_recorded(run_dir: Path, recorded: dict) -> None:
    """Refuses to resume a run made with another model or other data, naming the difference.

    Raises:
      RunDirError: one line, before anything is written.
    """
    try:
        saved = json.loads((run_dir / "config.json").read_text()).get("recorded") or {}
    except (OSError, ValueError):
        saved = {}
    checks = (("model", "trainable_parameters", "the model's parameter count"),
              ("model", "architecture_fingerprint", "the model's architecture"),
              ("data", "example_shape", "the examples' shape"),
              ("data", "num_classes", "the number of classes"),
              ("data", "fingerprint", "the data"))
    for part, key, what in checks:
        was, now = (saved.get(part) or {}).get(key), recorded[part][key]
        if was is not None and was != now:
            source = saved[part].get("source") or saved[part].get("builder")
            now_source = recorded[part].get("source") or recorded[part].get("builder")
            raise RunDirError(
                f"{run_dir} was trained with other {part} ({what} was {was}, now {now}; "
                f"{part} then: {source}, now: {now_source}), so it cannot be resumed: pass "
                "--overwrite to start it again, or choose another --run_name")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)
