"""tf.distribute for tapeloop: building the strategy, and what each replica and worker does.

- `default`: TensorFlow's default strategy (one device, no replicas to sync).
- `mirrored`: `MirroredStrategy` over this machine's devices (`--cpu_devices=N` splits
  the CPU into N logical devices, which must happen before TensorFlow starts).
- `multi_worker`: `MultiWorkerMirroredStrategy`, the cluster from `TF_CONFIG` (or
  built from worker hosts and a task index); one replica per worker.

Every global batch is cut into one shard per replica inside the input pipeline
(`pipelines.make_pipeline(..., shard=...)`), so a global batch still comes from
one class block and every replica sees a phase boundary at the same step. The
loss is divided by the global batch's size (all-reduced), so the summed update is
the single-device one.
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from tapeloop.trainers.records.config import STRATEGIES


def split_cpu(num_devices: int) -> None:
    """Splits the CPU into `num_devices` logical devices (before TensorFlow initializes).

    Raises:
      RuntimeError: TensorFlow has already initialized its devices.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])


def cluster_config(worker_hosts: list[str], task_index: int) -> dict:
    """The TF_CONFIG of worker `task_index` among `worker_hosts` (host:port each).

    Raises:
      ValueError: no hosts, a host without a port, or an index out of range.
    """
    if not worker_hosts:
        raise ValueError("worker_hosts must list at least one host:port")
    for host in worker_hosts:
        name, sep, port = host.rpartition(":")
        if not sep or not name or not port.isdigit():
            raise ValueError(f"worker_hosts: {host!r} is not host:port")
    if not 0 <= task_index < len(worker_hosts):
        raise ValueError(f"task_index ({task_index}) must lie in [0, {len(worker_hosts) - 1}] "
                         f"for {len(worker_hosts)} worker hosts")
    return {"cluster": {"worker": list(worker_hosts)},
            "task": {"type": "worker", "index": task_index}}


def make_strategy(name: str, *, collective_timeout: float = 0.0) -> tf.distribute.Strategy:
    """Builds the strategy `name` (one of `STRATEGIES`); call it first thing in a program.

    `collective_timeout` > 0 (multi_worker): a collective that waits longer, for
    example on a dead peer, fails with an error instead of hanging.

    Raises:
      ValueError: unknown name, or multi_worker without a usable TF_CONFIG.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        try:
            config = json.loads(os.environ.get("TF_CONFIG", ""))
            workers = config["cluster"]["worker"]
            index = config["task"]["index"]
        except (ValueError, KeyError, TypeError):
            raise ValueError("strategy multi_worker needs the cluster in TF_CONFIG, or "
                             "--worker_hosts and --task_index") from None
        if not isinstance(workers, list) or not 0 <= int(index) < len(workers):
            raise ValueError(f"TF_CONFIG: task index {index} is not one of the "
                             f"{len(workers)} workers")
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=collective_timeout or None)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ValueError(f"strategy ({name!r}) must be one of {', '.join(STRATEGIES)}")


def is_distributed(strategy: tf.distribute.Strategy) -> bool:
    """True for the mirrored and multi-worker strategies (replicas to keep in sync)."""
    return isinstance(strategy, (tf.distribute.MirroredStrategy,
                                 tf.distribute.MultiWorkerMirroredStrategy))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this is a non-chief worker of a multi-worker cluster (worker 0 is chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker"
                                             and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().jobs)


def worker_dir(run_dir: Path, strategy: tf.distribute.Strategy) -> Path:
    """Where this worker writes: the run dir for the chief, a temporary dir for others.

    Every worker takes part in saving (collectives), but only the chief's copy is
    kept; the others' are removed at the end, as TensorFlow's multi-worker guide says.
    """
    if is_chief(strategy):
        return Path(run_dir)
    resolver = strategy.cluster_resolver
    # One fixed name per (run, worker): a worker killed before it could clean up
    # leaves it behind, and the next start of that worker clears it.
    run_key = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / (f"tapeloop_{run_key}_{resolver.task_type}"
                                          f"{resolver.task_id}")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def distribute_stream(strategy: tf.distribute.Strategy, make_dataset):
    """An iterator of per-replica batches; `make_dataset(shard, num_shards)` builds one shard.

    Shard i of every global batch goes to replica i (multi-worker: to worker i).
    """
    if not is_distributed(strategy):
        return iter(make_dataset(0, 1))
    per_replica = isinstance(strategy, tf.distribute.MirroredStrategy)
    options = tf.distribute.InputOptions(
        experimental_replication_mode=(tf.distribute.InputReplicationMode.PER_REPLICA
                                       if per_replica else
                                       tf.distribute.InputReplicationMode.PER_WORKER),
        experimental_place_dataset_on_device=False, experimental_fetch_to_device=False)

    def dataset_fn(context):
        return make_dataset(context.input_pipeline_id, context.num_input_pipelines)

    return iter(strategy.distribute_datasets_from_function(dataset_fn, options))


def sum_over_replicas(strategy: tf.distribute.Strategy, sums_fn):
    """`fn(images, labels)`: each replica runs `sums_fn` on its share; the sums are added.

    Used for evaluation and the probe: every replica (every worker) evaluates its
    strided share of the set, and the per-class sums are reduced across replicas.
    """
    if not is_distributed(strategy):
        return sums_fn

    def replica_fn(images, labels):
        return sums_fn(*replica_share(images, labels))

    def fn(images, labels):
        per_replica = strategy.run(replica_fn, args=(images, labels))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    return fn


def run_train_step(strategy: tf.distribute.Strategy, train_step, *, details: bool = False,
                   max_rows: int = 0):
    """`train_step` (see `steps.make_train_step(distributed=...)`) run on every replica.

    Returns `step(per_replica_batch) -> metrics` in cross-replica context: the loss,
    count and number right summed over replicas (the loss is already a share of the
    global mean), accuracy from those sums; phase and gradient norms (the same on
    every replica) from the first local replica.

    `details` (for inspecting a step): the metrics also hold the whole global batch
    trained on (`image`, `label`), its `logits` and `example_loss`, gathered from
    every replica (replica 0's rows first); `max_rows` bounds a replica's batch (a
    remedy may add examples to the stream's).
    """
    if not is_distributed(strategy):
        return train_step
    total = tf.distribute.ReduceOp.SUM

    def step(batch):
        per_replica = strategy.run(train_step, args=(batch,))

        def first(x):
            return strategy.experimental_local_results(x)[0]

        # One reduction (one collective across workers) for the four sums of a step.
        sums = strategy.run(lambda m: tf.stack([m["loss"], m["count"], m["correct"],
                                                m["regularization_loss"]]), args=(per_replica,))
        loss, count, correct, reg = tf.unstack(strategy.reduce(total, sums, axis=None))
        metrics = {"loss": loss, "count": count, "correct": correct, "regularization_loss": reg,
                   "accuracy": correct / count, "phase": first(per_replica["phase"]),
                   "grad_norms": first(per_replica["grad_norms"]),
                   "grad_norm": first(per_replica["grad_norm"])}
        if details:
            keys = ("image", "label", "logits", "example_loss")
            metrics.update(zip(keys, _gather_rows(strategy, [per_replica[k] for k in keys],
                                                  max_rows)))
        return metrics

    return step


def replica_share(*tensors) -> tuple:
    """This replica's rows i, i+n, i+2n, ... of each tensor (as the stream deals batches);
    all of them on one device or outside a replica context."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensors
    i, n = context.replica_id_in_sync_group, context.num_replicas_in_sync
    return tuple(x[i::n] for x in tensors)


def _gather_rows(strategy: tf.distribute.Strategy, per_replica: list, max_rows: int) -> list:
    """Every replica's rows of each tensor, concatenated (replica 0 first).

    Each replica pads to `max_rows` rows so that the gather keeps one shape: in the
    compiled loop a collective runs as one instance every step, and an instance
    keeps the shape it first ran with (shards that shrink on a partial batch fail
    with "Shape mismatch in the collective instance"). The padding is dropped after.
    """
    def pad(*values):
        size = tf.shape(values[0])[0]
        padded = [tf.pad(x, [[0, max_rows - size]] + [[0, 0]] * (x.shape.rank - 1))
                  for x in values]
        return padded + [tf.cast(tf.range(max_rows) < size, tf.int32)]  # no bool gathers

    gathered = [strategy.gather(x, axis=0) for x in strategy.run(pad, args=tuple(per_replica))]
    valid = gathered[-1] > 0
    return [tf.boolean_mask(x, valid) for x in gathered[:-1]]


def task_name(strategy: tf.distribute.Strategy) -> str:
    """"worker 1" in a cluster, "" on one machine."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return f"{resolver.task_type} {resolver.task_id}" if resolver and resolver.task_type else ""


def weights_fingerprint(variables) -> str:
    """A short SHA-256 of the variables' bytes: equal on workers that are in sync."""
    digest = hashlib.sha256()
    for v in variables:
        digest.update(v.numpy().tobytes())
    return digest.hexdigest()[:16]
