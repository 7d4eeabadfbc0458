"""Weight drift: how far the weights moved, from the start and from the current phase's start.

Kept in the graph: reference copies of the weights live in variables, so the
distances are computed inside the compiled loop without a host round trip.
"""

import tensorflow as tf


def variable_names(model: tf.keras.Model) -> list[str]:
    """Short names of the trainable variables, e.g. "dense_0/kernel", in model order."""
    prefix = model.name + "/"
    return [v.path[len(prefix):] if v.path.startswith(prefix) else v.path
            for v in model.trainable_variables]


class WeightDrift(tf.Module):
    """Reference weights (initial, phase start) and the drift metrics measured against them."""

    def __init__(self, model: tf.keras.Model):
        super().__init__(name="weight_drift")
        self._weights = list(model.trainable_variables)
        self.names = variable_names(model)
        self.initial = [tf.Variable(v, trainable=False, name=f"initial_{i}")
                        for i, v in enumerate(self._weights)]
        self.phase_start = [tf.Variable(v, trainable=False, name=f"phase_start_{i}")
                            for i, v in enumerate(self._weights)]
        # The weights just before the step being measured, for the update's norm: taken
        # only before a measured step, so other steps copy nothing.
        self.previous = [tf.Variable(v, trainable=False, name=f"previous_{i}")
                         for i, v in enumerate(self._weights)]
        # Relative drift needs a non-zero starting norm: biases start at zero, so they get none.
        self._initial_norms = [float(tf.norm(v)) for v in self.initial]
        self._initial_model_norm = float(_global_norm(self._initial_norms))  # the model's, once

    def mark_phase_start(self) -> None:
        """Remembers the current weights as the start of a new phase."""
        for ref, v in zip(self.phase_start, self._weights):
            ref.assign(v)

    def mark_previous(self) -> None:
        """Remembers the current weights; call it right before the step to be measured."""
        for ref, v in zip(self.previous, self._weights):
            ref.assign(v)

    def metrics(self, grad_norms: tf.Tensor) -> dict[str, tf.Tensor]:
        """Drift scalars per variable and for the whole model.

        The update norms compare the weights with those saved by `mark_previous`.

        Args:
          grad_norms: (num_variables,) L2 norm of each variable's last gradient.

        Returns:
          `weights/drift/{from_init,from_phase_start,relative,update_norm,grad_norm}/NAME` for
          every variable NAME and for `model` (all variables as one vector).
        """
        weights = [tf.convert_to_tensor(v) for v in self._weights]  # one read each
        # Squared distances, (3, variables): from init, from phase start, the update.
        squares = tf.stack([
            tf.stack([tf.reduce_sum(tf.math.squared_difference(w, r))
                      for w, r in zip(weights, refs)])
            for refs in (self.initial, self.phase_start, self.previous)])
        norms = tf.sqrt(squares)
        model = tf.sqrt(tf.reduce_sum(squares, axis=1))
        grad_norms = tf.cast(grad_norms, tf.float32)
        out = {}
        for i, name in enumerate(self.names):
            out[f"weights/drift/from_init/{name}"] = norms[0, i]
            out[f"weights/drift/from_phase_start/{name}"] = norms[1, i]
            if self._initial_norms[i] > 0:
                out[f"weights/drift/relative/{name}"] = norms[0, i] / self._initial_norms[i]
            out[f"weights/drift/update_norm/{name}"] = norms[2, i]
            out[f"weights/drift/grad_norm/{name}"] = grad_norms[i]
        out["weights/drift/from_init/model"] = model[0]
        out["weights/drift/from_phase_start/model"] = model[1]
        out["weights/drift/relative/model"] = model[0] / self._initial_model_norm
        out["weights/drift/update_norm/model"] = model[2]
        out["weights/drift/grad_norm/model"] = tf.sqrt(tf.reduce_sum(tf.square(grad_norms)))
        return out


def _global_norm(norms) -> tf.Tensor:
    return tf.sqrt(tf.add_n([tf.square(tf.cast(n, tf.float32)) for n in norms]))
