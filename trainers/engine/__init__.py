"""The compiled engine: model, loss, optimizer, steps, the K-step loop, evaluation, tf.distribute, TF internals."""
