"""Remedies against forgetting: objects passed in a list, chosen with `--remedy` or built by you.

Built in: `none` (fine-tuning, the lower bound), `joint` (every task at once, the
upper bound), `ewc`, `online_ewc`, `si`, `lwf`, `agem`, `replay`, `reservoir` (the tutorial's
`--order=replay` is the sorted order with it); they combine
(`--remedy=replay,ewc`). A remedy of your own is a `base.Remedy` subclass passed to
`train_and_evaluate(remedies=[...])` or `cli.run_from_flags(remedies=[...])`.
"""

from tapeloop.trainers.extend.remedies.agem import AGEM
from tapeloop.trainers.extend.remedies.base import ClassBalancedMemory, Remedy  # noqa: F401
from tapeloop.trainers.extend.remedies.ewc import EWC
from tapeloop.trainers.extend.remedies.joint import Joint
from tapeloop.trainers.extend.remedies.lwf import LwF
from tapeloop.trainers.extend.remedies.replay import Replay
from tapeloop.trainers.extend.remedies.reservoir import ReservoirReplay
from tapeloop.trainers.extend.remedies.si import SI

BUILT_IN = {
    "none": lambda c: None,
    "joint": lambda c: Joint(),
    "ewc": lambda c: EWC(c.ewc_lambda, fisher_samples=c.fisher_samples),
    "online_ewc": lambda c: EWC(c.ewc_lambda, online=True, gamma=c.online_ewc_gamma,
                                fisher_samples=c.fisher_samples),
    "si": lambda c: SI(c.si_c, epsilon=c.si_epsilon),
    "lwf": lambda c: LwF(c.lwf_temperature),
    "agem": lambda c: AGEM(c.replay_per_class, epsilon=c.agem_epsilon),
    "replay": lambda c: Replay(c.replay_per_class),
    "reservoir": lambda c: ReservoirReplay(c.replay_capacity, c.replay_fraction),
}
NAMES = tuple(BUILT_IN)  # as config.REMEDIES lists them (the flag's choices; tested)


def make(config) -> list[Remedy]:
    """The built-in remedies `config.remedy` names, with their settings from `config`."""
    names = tuple(config.remedy or ()) + (("reservoir",) if config.order == "replay" else ())
    made = [BUILT_IN[name](config) for name in names]
    return [r for r in made if r is not None]
