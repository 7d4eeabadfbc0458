"""Joint training, the upper bound: every task's data at once, in one phase.

As in van de Ven's compare.py, the network trains for as many batches as the whole
sequence would (tasks x steps per task), each batch drawn from all tasks' examples,
scored as the scenario scores them (task-IL: each example on its task's outputs).
"""

from tapeloop.trainers.extend.remedies.base import Remedy


class Joint(Remedy):
    name = "joint"
    joint = True
