"""Run directories: what a run may write to, and whether it may continue what is there."""

import fcntl
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from tapeloop.trainers.records.config import Config


CHECKPOINT_DIR = "checkpoints"


class SetupError(ValueError):
    """The run cannot start as configured; the message says why and what to do."""


class RunDirError(SetupError):
    """The run directory cannot be used; the message says why and what to do."""


# What tapeloop writes in a run directory: only these are ever deleted by --overwrite
# or by restarting a run that died before its first checkpoint.
OWN_FILES = ("config.json", "results.json", "accuracy_matrix.csv", "accuracy_matrix.png",
             ".accuracy_matrix.csv.tmp", ".accuracy_matrix.png.tmp")
OWN_DIRS = ("checkpoints", "weights", "inspect", "plugins")
OWN_PREFIXES = ("events.out.tfevents.",)


def is_run(run_dir: Path) -> bool:
    """Whether `run_dir` is a tapeloop run: its marker `config.json`, or its checkpoints."""
    return (run_dir / "config.json").is_file() or (run_dir / CHECKPOINT_DIR).is_dir()


def foreign_entries(run_dir: Path) -> list[str]:
    """The names in `run_dir` that tapeloop did not write (sorted)."""
    return sorted(p.name for p in run_dir.iterdir()
                  if not (p.name in OWN_FILES and p.is_file() or p.name in OWN_DIRS and p.is_dir()
                          or p.name.startswith(OWN_PREFIXES) and p.is_file()))


def clear_run_dir(run_dir: Path) -> None:
    """Deletes what tapeloop wrote in `run_dir`, and nothing else (see `foreign_entries`)."""
    foreign = set(foreign_entries(run_dir))
    for path in run_dir.iterdir():
        if path.name not in foreign:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def check_run_dir(run_dir: Path, *, overwrite: bool, resume: bool = False,
                  config: Config | None = None) -> bool:
    """Refuses a run directory that is a file, unwritable, or holds what it cannot continue.

    `overwrite` replaces only a tapeloop run holding nothing but what tapeloop wrote.
    A run that died before its first checkpoint has nothing to lose and starts again.

    Returns:
      True when `run_dir` holds a checkpointed run with a compatible config that
      `resume` allows continuing; False when it is to be started fresh (and then
      `clear_run_dir` may empty it).

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
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return False
    if not is_run(run_dir):
        raise RunDirError(f"{run_dir} holds files but no tapeloop run (no config.json): "
                          "choose another --run_name (--overwrite only replaces tapeloop runs)")
    foreign = foreign_entries(run_dir)
    stub = not saved_steps(run_dir)  # died before its first checkpoint
    if (overwrite or stub and resume) and foreign:
        raise RunDirError(f"{run_dir} holds files tapeloop did not write ("
                          f"{', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}): "
                          "move them out first, or choose another --run_name")
    if overwrite or stub and resume:
        return False
    if not resume:
        raise RunDirError(f"{run_dir} already holds a run: pass --overwrite to replace it, "
                          "or choose another --run_name")
    saved = read_json(run_dir / "config.json")
    differing = config.differences(saved) if config is not None else []
    if differing:
        raise RunDirError(
            f"{run_dir} holds a run with other settings, so it cannot be resumed: "
            + ", ".join(f"--{k} was {saved.get(k)!r}, now {getattr(config, k)!r}"
                        for k in differing)
            + " (pass --overwrite to start it again, or choose another --run_name)")
    return True


def read_json(path: Path) -> dict:
    """A run's JSON record (`config.json`, `results.json`).

    Raises:
      RunDirError: it is missing, unreadable or damaged (one line, with the way out).
    """
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing: pass --overwrite to start the run again, "
                          "or choose another --run_name") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RunDirError(f"{path} is damaged ({type(e).__name__}: {e}): pass --overwrite to "
                          "start the run again, or choose another --run_name") from None
    if not isinstance(value, dict):
        raise RunDirError(f"{path} is damaged (not a JSON object): pass --overwrite to start "
                          "the run again, or choose another --run_name")
    return value


class RunLock:
    """An exclusive lock on one run directory, held while a process trains it.

    The lock is `flock` on `.RUN_NAME.lock` beside the run directory (so that
    replacing the directory never drops it), holding the holder's PID. The OS
    releases it when the process dies, however it dies. Entering takes it if the
    parent directory exists (nothing is created for a run refused before it
    starts); `acquire()` takes it, creating the parent, before a run dir is made.
    """

    def __init__(self, run_dir: Path):
        self.path = lock_path(run_dir)
        self.run_dir = Path(run_dir)
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def __enter__(self):
        if self.path.parent.is_dir():
            self.acquire()
        return self

    def acquire(self) -> None:
        """Takes the lock (creating the parent directory if needed).

        Raises:
          RunDirError: another process holds it (the message names its PID).
        """
        if self.held:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            file = open(self.path, "a+")
        except OSError as e:
            raise RunDirError(f"{self.run_dir} cannot be created or written: "
                              f"{e.strerror or e}") from None
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "?"
            file.close()
            raise RunDirError(f"{self.run_dir} is in use by another tapeloop process (PID "
                              f"{holder}): wait for it to end or stop it, then run the same "
                              "command again") from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file

    def __exit__(self, *exc):
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None
        return False


NAME_MAX = 255  # the longest file name, in bytes, on Linux and macOS file systems


def lock_path(run_dir: Path) -> Path:
    """`.RUN_NAME.lock` beside the run directory (see `RunLock`).

    A run name too long for that file name (the lock adds 6 bytes) gets a lock of its
    first 200 bytes and a hash of the whole name. Run names never start with "."
    (`cli.run_dir_in`), so no run is named like a lock.
    """
    run_dir = Path(run_dir)
    name = f".{run_dir.name}.lock"
    if len(os.fsencode(name)) > NAME_MAX:
        digest = hashlib.sha256(os.fsencode(run_dir.name)).hexdigest()[:16]
        name = f".{os.fsencode(run_dir.name)[:200].decode(errors='ignore')}-{digest}.lock"
    return run_dir.parent / name


def lock_holder(run_dir: Path) -> int | None:
    """The PID holding `run_dir`'s lock, or None when it is free."""
    try:
        with open(lock_path(run_dir)) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return int(f.read().strip() or 0) or -1
    except (OSError, ValueError):
        return None
    return None


def check_recorded(run_dir: Path, recorded: dict) -> None:
    """Refuses to resume a run made with other data, model, loss, step or script flags.

    Only the parts `recorded` holds are compared, so the data can be checked before
    the model is built (a changed data set is then named as such).

    Raises:
      RunDirError: one line naming the difference, before anything is written.
    """
    saved = read_json(run_dir / "config.json").get("recorded") or {}
    way_out = "pass --overwrite to start it again, or choose another --run_name"
    # The script's flags first: a changed flag is the likely cause of any other change.
    was, now = saved.get("script_flags"), recorded.get("script_flags")
    if "script_flags" in recorded and was is not None and was != now:
        changed = [f"--{k} was {was.get(k)!r}, now {now.get(k)!r}"
                   for k in sorted(was.keys() | now.keys()) if was.get(k) != now.get(k)]
        raise RunDirError(f"{run_dir} was trained with other values of the script's own flags "
                          f"({', '.join(changed)}), so it cannot be resumed: {way_out}")
    checks = (("data", "example_shape", "the examples' shape"),
              ("data", "num_classes", "the number of classes"),
              ("data", "fingerprint", "the data"),
              ("model", "trainable_parameters", "the model's parameter count"),
              ("model", "architecture_fingerprint", "the model's architecture"),
              ("model", "builder", "the model's builder"))
    for part, key, what in checks:
        if part not in recorded:
            continue
        was, now = (saved.get(part) or {}).get(key), recorded[part][key]
        if was is not None and was != now:
            source = saved[part].get("source") or saved[part].get("builder")
            now_source = recorded[part].get("source") or recorded[part].get("builder")
            raise RunDirError(
                f"{run_dir} was trained with other {part} ({what} was {was}, now {now}; "
                f"{part} then: {source}, now: {now_source}), so it cannot be resumed: {way_out}")
    for key, what in (("objective", "loss"), ("train_step", "train step"), ("order", "order")):
        was, now = saved.get(key), recorded.get(key)
        if key in recorded and was is not None and was != now:
            raise RunDirError(f"{run_dir} was trained with another {what} ({was}, now {now}), "
                              f"so it cannot be resumed: {way_out}")
    was, now = saved.get("scenario"), recorded.get("scenario")
    if "scenario" in recorded and was != now:
        raise RunDirError(f"{run_dir} was trained with another scenario ({_tasks(was)}, now "
                          f"{_tasks(now)}), so it cannot be resumed: {way_out}")
    was, now = saved.get("remedies"), recorded.get("remedies")
    if "remedies" in recorded and was != now:
        raise RunDirError(f"{run_dir} was trained with other remedies ({_remedies(was)}, now "
                          f"{_remedies(now)}), so it cannot be resumed: {way_out}")


def _tasks(table: dict | None) -> str:
    if not table:
        return "none"
    return (f"{table['name']}: " + "; ".join(",".join(map(str, t["classes"]))
                                             for t in table["tasks"]))


def _remedies(remedies: list | None) -> str:
    if not remedies:
        return "none"
    return "; ".join(r["name"] + "".join(f" {k}={v}" for k, v in r["hparams"].items())
                     for r in remedies)


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def saved_steps(run_dir: Path) -> list[int]:
    """The steps of the checkpoints kept in `run_dir` (their files, not the index), newest first.

    A checkpoint whose `ckpt-N_temp` directory is still there was being written
    when the process died (TensorFlow removes it once the files are complete): it
    does not count.
    """
    steps = []
    folder = Path(run_dir) / CHECKPOINT_DIR
    for index in folder.glob("ckpt-*.index"):
        number = index.name[len("ckpt-"):-len(".index")]
        if number.isdigit() and not (folder / f"ckpt-{number}_temp").exists():
            steps.append(int(number))
    return sorted(steps, reverse=True)


def latest_step(run_dir: Path) -> int | None:
    """The global step of the newest checkpoint kept in `run_dir`, or None."""
    steps = saved_steps(run_dir)
    return steps[0] if steps else None


def error_line(error: Exception, limit: int = 200) -> str:
    """One line of an exception for an `error:` or `note:` line.

    TensorFlow's out-of-memory errors open with a long function name: their
    "OOM when allocating tensor with shape[...]" is what the line keeps.
    """
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    oom = re.search(r"OOM when allocating tensor with shape\[[^\]]*\]", text)
    return oom.group(0) if oom else (text.strip().splitlines() or [""])[0][:limit]
