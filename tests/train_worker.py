"""A long-lived `python -m tapeloop.trainers.train` for the tests (`conftest.run_train_here`).

Each line on stdin is a JSON list of arguments; for each, the worker runs the training
script's own flag parsing (absl's `app.run`) and `main`, as a new process would, and
answers with one JSON line: the exit code and what the run printed. TensorFlow starts
once per worker instead of once per run (about 5 s each), and the test process keeps
its own flags and TensorFlow state: only this script's flags are defined here.
"""

import contextlib
import io
import json
import os
import sys

from absl import app, flags

from tapeloop.trainers import train


def run(args: list[str]) -> dict:
    flags.FLAGS.unparse_flags()  # every flag back to its default, as in a new process
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            app.run(train.main, argv=["train", *args])
        except SystemExit as e:  # what the interpreter does with sys.exit(e.code)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException as e:  # an unexpected error: its traceback, exit code 1
            import traceback

            traceback.print_exception(e, file=sys.stderr)
            code = 1
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def serve() -> None:
    # Answers go to a copy of stdout; the run's own writes to fd 1 (native code) go to
    # stderr, so that nothing else can land in the answers.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    for line in sys.stdin:
        answers.write(json.dumps(run(json.loads(line))) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve()
