"""`python -m tapeloop.trainers.train ARGS`, pausing inside every checkpoint save.

For tests/test_reliability.py only: after a checkpoint's files are written and before
TensorFlow's CheckpointManager names it in its index, the process prints
`checkpoint files written: PATH` and sleeps PAUSE seconds (the first argument), so the
test can kill it in the middle of a save. tapeloop itself has no such hook.
"""

import sys
import time

import tensorflow as tf

PAUSE = float(sys.argv.pop(1))


def _pause(save_path):
    print(f"checkpoint files written: {save_path}", flush=True)
    time.sleep(PAUSE)


_save = tf.train.CheckpointManager.save


def _paused_save(self, checkpoint_number=None, check_interval=True, options=None):
    options = tf.train.CheckpointOptions(experimental_write_callbacks=[_pause])
    return _save(self, checkpoint_number, check_interval, options=options)


tf.train.CheckpointManager.save = _paused_save

if __name__ == "__main__":
    from tapeloop.trainers import train
    train.run()
