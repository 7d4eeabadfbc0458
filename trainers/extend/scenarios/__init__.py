"""Continual-learning scenarios: a run's tasks, chosen with `--scenario` or passed in.

Built in: `split_mnist_{task,domain,class}` (`split.Split`) and
`permuted_mnist_{task,domain,class}` (`permuted.Permuted`), and the tutorial's orders
(`orders.Shuffled`, `orders.Sorted`, `orders.Blocked`, chosen with `--order`). A scenario
of your own is a `base.Scenario` subclass passed to `train_and_evaluate(scenario=...)`.
"""

from tapeloop.trainers.records.config import SCENARIO_FAMILIES, SCENARIOS as NAMES
from tapeloop.trainers.extend.scenarios import orders  # noqa: F401
from tapeloop.trainers.extend.scenarios.base import KINDS, Scenario, Task  # noqa: F401
from tapeloop.trainers.extend.scenarios.permuted import Permuted
from tapeloop.trainers.extend.scenarios.split import Split

FAMILIES = dict(zip(SCENARIO_FAMILIES, (Split, Permuted)))


# The reference protocol of each scenario family and kind, from van de Ven's code
# (GMvandeVen/continual-learning, params/param_values.py and compare.py): what
# `--scenario=NAME` alone runs. Settings given on the command line take precedence.
# What every task sequence runs with (its tasks once; scored on the probe and test split),
# whichever scenario: a script passing its own scenario object gets these too.
TASK_SEQUENCE = {"epochs": 1, "validation_split": 0.0}
_COMMON = {**TASK_SEQUENCE, "activation": "relu", "dropout": 0.0,
           "optimizer": "adam", "batch_size": 128, "lwf_temperature": 2.0,
           "agem_epsilon": 1e-7, "si_epsilon": 0.1}
PROTOCOLS = {
    "split_mnist": {**_COMMON, "hidden_sizes": (400, 400), "learning_rate": 1e-3,
                    "steps_per_task": 2000, "replay_per_class": 100, "fisher_samples": 0},
    "permuted_mnist": {**_COMMON, "hidden_sizes": (1000, 1000), "learning_rate": 1e-4,
                       "steps_per_task": 5000, "replay_per_class": 10,
                       "fisher_samples": 1000},
}
STRENGTHS = {  # (ewc_lambda, si_c) per kind
    "split_mnist": {"task": (1e5, 10.0), "domain": (1e10, 5e4), "class": (1e9, 5e3)},
    "permuted_mnist": {"task": (100.0, 10.0), "domain": (100.0, 10.0), "class": (100.0, 5.0)},
}


def protocol(name: str) -> dict:
    """The settings of scenario `name`'s reference protocol (`config.Config` fields)."""
    family, _, kind = name.rpartition("_")
    if family not in PROTOCOLS or kind not in KINDS:
        raise ValueError(f"scenario ({name!r}) must be one of {', '.join(NAMES)}")
    ewc_lambda, si_c = STRENGTHS[family][kind]
    return {**PROTOCOLS[family], "ewc_lambda": ewc_lambda, "si_c": si_c}


def make(name: str, *, steps_per_task: int) -> Scenario:
    """The built-in scenario `name` (one of `NAMES`)."""
    family, _, kind = name.rpartition("_")
    if family not in FAMILIES or kind not in KINDS:
        raise ValueError(f"scenario ({name!r}) must be one of {', '.join(NAMES)}")
    scenario = FAMILIES[family](kind, steps_per_task=steps_per_task)
    scenario.name = name
    return scenario
