"""A custom loss term: an L2 pull toward the weights at the start of each phase.

    python examples/l2_to_phase_start.py --flagfile=trainers/configs/mnist_sorted.flags \
        --l2_strength=0.01 --run_name=l2_pull

The penalty `strength * sum ||w - w_phase_start||^2` is added to every step's loss
(logged as train/regularization_loss); an action copies the weights into the anchor
at every phase start. The anchor is part of the checkpoint, so a resumed run pulls
toward the same weights. The seed of the remedies to come (EWC weighs the same pull
per weight).
"""

from absl import app, flags

import tapeloop

tapeloop.define_flags()
_STRENGTH = flags.DEFINE_float("l2_strength", 0.01, "Strength of the pull toward the "
                               "weights at the phase start (0: the plain step).",
                               lower_bound=0.0)


class PhaseStartAnchor(tapeloop.Action):
    """Holds a copy of the weights, taken at every phase start; its penalty pulls toward it."""

    def __init__(self, strength: float):
        super().__init__()
        self.strength = strength
        self.weights, self.anchor = None, None  # made when the model exists (build)

    def build(self, model):
        import tensorflow as tf

        self.weights = model.trainable_variables
        self.anchor = [tf.Variable(w, trainable=False, name=f"anchor_{i}")
                       for i, w in enumerate(self.weights)]

    def checkpoint_items(self):
        return {f"anchor_{i}": a for i, a in enumerate(self.anchor or ())}

    def on_phase_start(self, step, phase, context):
        for a, w in zip(self.anchor, self.weights):
            a.assign(w)

    def penalty(self):
        import tensorflow as tf

        return self.strength * tf.add_n([tf.reduce_sum(tf.square(w - a))
                                         for w, a in zip(self.weights, self.anchor)])


def main(argv):
    anchor = PhaseStartAnchor(_STRENGTH.value)
    tapeloop.run_from_flags(argv, penalty=anchor.penalty if _STRENGTH.value else None,
                            actions=[anchor])


if __name__ == "__main__":
    app.run(main)
