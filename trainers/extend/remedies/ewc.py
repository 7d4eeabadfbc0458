"""Elastic weight consolidation (Kirkpatrick et al. 2017), offline and online (Schwarz et al. 2018).

After each task k, the diagonal of the Fisher information F_k of its data is estimated
at the weights theta*_k it ended with; every later step adds

    lambda / 2 * sum_k sum_i F_k,i (theta_i - theta*_k,i)^2          (offline: a term per task)
    lambda / 2 * sum_i gamma F_i (theta_i - theta*_i)^2,  F <- gamma F + F_k   (online)

The offline sum is kept as one quadratic, so a step pays for one term however many
tasks came before: with A = sum_k F_k and M = sum_k F_k theta*_k / A,

    sum_k F_k (theta - theta*_k)^2 = A (theta - M)^2 + c,   c = sum_k F_k theta*_k^2 - A M^2,

the same value and gradient (c, a constant, only keeps the loss's value); `merge`
folds each task's F_k and theta*_k into (A, M, c) in float64 on the host.

F is the exact expectation over the model's own predictive distribution:
F_i = mean over examples x of sum_y p(y|x) (d log p(y|x) / d theta_i)^2, over the
outputs the task is scored on (van de Ven's `fisher_labels='all'`), computed with
per-example gradients.
"""

import numpy as np
import tensorflow as tf

from tapeloop.trainers.extend.remedies.base import Remedy, state_variable
from tapeloop.trainers.engine.steps import masked


class EWC(Remedy):
    """EWC with strength `strength` (lambda); `online`: one running Fisher, decayed by `gamma`.

    `fisher_samples` > 0: estimate F on that many of the task's training examples
    (drawn at random), else on all of them.
    """

    name = "ewc"

    def __init__(self, strength: float, *, online: bool = False, gamma: float = 1.0,
                 fisher_samples: int = 0):
        super().__init__()
        if not strength >= 0 or not 0 < gamma <= 1 or fisher_samples < 0:
            raise ValueError(f"EWC needs strength >= 0 ({strength}), gamma in (0, 1] ({gamma}) "
                             f"and fisher_samples >= 0 ({fisher_samples})")
        self.strength, self.online, self.gamma = strength, online, gamma
        self.fisher_samples = fisher_samples
        self.name = "online_ewc" if online else "ewc"
        self._compiled = {}  # the Fisher's compiled functions, by the outputs scored

    def hparams(self) -> dict:
        return {"lambda": self.strength, "fisher_samples": self.fisher_samples,
                **({"gamma": self.gamma} if self.online else {})}

    def build(self, model) -> None:
        self._variables = model.trainable_variables
        self.fisher = [state_variable(tf.zeros(v.shape), f"fisher_sum_{i}")
                       for i, v in enumerate(self._variables)]
        self.anchor = [state_variable(tf.zeros(v.shape), f"anchor_{i}")
                       for i, v in enumerate(self._variables)]
        self.offset = state_variable(0.0, "offset")

    def checkpoint_items(self) -> dict:
        return {"fisher": self.fisher, "anchor": self.anchor, "offset": self.offset}

    def penalty(self):
        decay = self.gamma if self.online else 1.0
        return 0.5 * self.strength * (decay * tf.add_n([
            tf.reduce_sum(f * tf.square(v - m))
            for v, m, f in zip(self._variables, self.anchor, self.fisher)]) + self.offset)

    def on_phase_end(self, step, task, context):
        scenario = context.scenario
        if task >= scenario.num_tasks - 1:
            return  # no task follows: nothing to protect it from
        idx = scenario.task_indices(context.data.y_train, task)
        if self.fisher_samples:  # drawn before the rows are transformed (a copy of each)
            rng = np.random.default_rng([context.seed, 13, task])
            idx = idx[rng.permutation(len(idx))[:self.fisher_samples]]
        rows = scenario.transform(context.train_x[idx], task)
        mask = scenario.output_mask()
        fisher = fisher_diagonal(context.model, context.forward, self._variables, rows, task,
                                 scenario.scored_outputs(task),
                                 None if mask is None else mask[task], cache=self._compiled)
        offset = float(self.offset.numpy())
        for v, m, f, new in zip(self._variables, self.anchor, self.fisher, fisher):
            if self.online:  # one running Fisher, anchored at the latest weights
                total, anchor, added = self.gamma * f.numpy() + new, v.numpy(), 0.0
            else:
                total, anchor, added = merge(f.numpy(), m.numpy(), new, v.numpy())
            f.assign(total)
            m.assign(anchor)
            offset += added
        self.offset.assign(offset)


def merge(fisher, anchor, new_fisher, point):
    """Folds a task's term F (theta - point)^2 into the quadratic fisher (theta - anchor)^2:
    returns the new (fisher, anchor) as float32 and what the constant c gains (a float),
    computed in float64. Where the summed Fisher is zero the anchor is zero."""
    a, m, f, p = (np.asarray(t, np.float64) for t in (fisher, anchor, new_fisher, point))
    total = a + f
    weighted = a * m + f * p
    merged = np.divide(weighted, total, out=np.zeros_like(total), where=total > 0)
    added = float(np.sum(a * m * m + f * p * p - total * merged * merged))
    return total.astype(np.float32), merged.astype(np.float32), added


def fisher_diagonal(model, forward, variables, rows: np.ndarray, task: int,
                    outputs: tuple[int, ...], mask=None, cache: dict | None = None
                    ) -> list[np.ndarray]:
    """The diagonal Fisher of `rows` (task `task`): mean over examples of
    sum over `outputs` y of p(y|x) * (d log p(y|x) / d theta)^2, per variable.

    A model that is a chain of Dense layers (tapeloop's MLP) takes a closed form: an
    example's kernel gradient is the outer product of the layer's input a and the
    gradient delta at its pre-activation, so its square is a^2 (x) delta^2 and the
    sum over examples is one matrix product, (a^2)^T (p_y delta_y^2). Any other model
    takes per-example gradients (`tf.GradientTape.jacobian`), the same numbers slower.
    `mask`: the task's outputs (task-IL), the others masked. `cache`: a dict that keeps
    the compiled function between calls (one per set of outputs scored).
    """
    chain = _dense_chain(model, variables)
    total = [np.zeros(v.shape, np.float64) for v in variables]
    size = sum(int(np.prod(v.shape)) for v in variables)
    width = max(max(v.shape[-1] for v in variables), 1)
    batch = (max(1, min(1000, (1 << 24) // (width * len(outputs)))) if chain
             else max(1, min(64, (1 << 24) // max(size, 1))))
    key = (tuple(outputs), None if mask is None else np.asarray(mask).tobytes(),
           None if chain else task)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = (_chain_fisher(chain, variables, outputs, mask) if chain else
                      _jacobian_fisher(forward, variables, task, outputs))
    fn = cache[key]
    for start in range(0, len(rows), batch):
        for i, s in enumerate(fn(tf.constant(rows[start:start + batch]))):
            total[i] += s.numpy()
    return [(t / len(rows)).astype(np.float32) for t in total]


def _dense_chain(model, variables):
    """The layers of a Sequential model of Dense (and inactive Dropout) layers whose
    trainable variables are `variables` in order; None for any other model."""
    if not isinstance(model, tf.keras.Sequential):
        return None
    chain, owned = [], []
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.Dense):
            chain.append(layer)
            owned += [layer.kernel] + ([layer.bias] if layer.use_bias else [])
        elif not isinstance(layer, tf.keras.layers.Dropout):
            return None
    if len(owned) != len(variables) or any(a is not b for a, b in zip(owned, variables)):
        return None
    if chain[-1].activation is not tf.keras.activations.linear:
        return None  # outputs that are not logits: the general way
    return chain


def _chain_fisher(chain, variables, outputs, mask):
    """One batch's Fisher sums for a Dense chain, every label at once: the gradient of
    log p(y|x) at the logits is onehot(y) - p, carried back through each layer."""
    mask = None if mask is None else tf.constant(mask, tf.bool)
    labels = tf.constant(outputs, tf.int32)

    @tf.function(reduce_retracing=True, autograph=False)
    def batch_fisher(x):
        inputs, slopes = [], []
        a = x
        for layer in chain:
            inputs.append(a)
            z = tf.matmul(a, layer.kernel)
            if layer.use_bias:
                z += layer.bias
            with tf.GradientTape() as tape:  # the activation's slope at z (elementwise)
                tape.watch(z)
                a = layer.activation(z)
            slopes.append(tape.gradient(a, z))
        if mask is not None:
            a = masked(a, mask)
        p = tf.nn.softmax(a)
        weight = tf.gather(p, labels, axis=1)  # (B, K): p(y|x) of each label y
        # (B, K, outputs): d log p(y|x) / d logits for each label y.
        delta = tf.one_hot(labels, p.shape[-1])[None] - p[:, None, :]
        if mask is not None:
            delta *= tf.cast(mask, tf.float32)
        sums = []
        for i in reversed(range(len(chain))):
            layer = chain[i]
            delta *= slopes[i][:, None, :]
            summed = tf.einsum("bk,bko->bo", weight, tf.square(delta))
            kernel = tf.matmul(tf.square(inputs[i]), summed, transpose_a=True)
            sums = [kernel] + ([tf.reduce_sum(summed, axis=0)] if layer.use_bias else []) + sums
            if i:
                delta = tf.einsum("bko,io->bki", delta, layer.kernel)
        return sums

    return batch_fisher


def _jacobian_fisher(forward, variables, task, outputs):
    @tf.function(reduce_retracing=True, autograph=False)
    def batch_fisher(x):
        tasks = tf.fill([tf.shape(x)[0]], task)
        with tf.GradientTape(persistent=True) as tape:
            log_p = tf.nn.log_softmax(forward(x, tasks=tasks, training=False))
            losses = [log_p[:, y] for y in outputs]
        p = tf.stop_gradient(tf.exp(log_p))
        sums = [tf.zeros(v.shape) for v in variables]
        for y, loss in zip(outputs, losses):
            for i, j in enumerate(tape.jacobian(loss, variables, experimental_use_pfor=True)):
                weight = tf.reshape(p[:, y], [-1] + [1] * (j.shape.rank - 1))
                sums[i] += tf.reduce_sum(weight * tf.square(j), axis=0)
        return sums

    return batch_fisher
