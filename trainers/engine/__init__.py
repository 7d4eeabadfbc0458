"""The compiled engine.

Model, loss, optimizer, the steps, the K-step loop, evaluation, tf.distribute, TF internals.
"""
