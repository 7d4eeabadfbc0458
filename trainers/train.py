"""Trains one run:
`python -m tapeloop.trainers.train --flagfile=trainers/configs/mnist_sorted.flags`.

This file is intentionally kept short: the flags come from the settings' one
definition (`trainers.cli`), and `cli.main` turns them into a `Config` and calls
`controller.train_and_evaluate`. A script of your own does the same with its own
model and data (see examples/).
"""

from absl import app

from tapeloop.trainers import cli

cli.define_flags()
config_from_flags = cli.config_from_flags  # what scripts reusing this one call


def main(argv):
    cli.main(argv)


def run():
    """Entry point of the `tapeloop-train` console script."""
    app.run(main)


if __name__ == "__main__":
    run()
