"""tapeloop's trainers, in layers: each folder imports only from the folders above it here.

    records/      what a run writes and reads back: its Config, run directory, summary
                  writers, event files, accuracy-matrix metrics, tables and plots
    engine/       the compiled engine: model, loss, optimizer, the training and evaluation
                  steps, the K-step loop, tf.distribute, the private TF internals
    instruments/  what watches forgetting: the held-out probe, weight drift, step dumps,
                  continual evaluation, and the suite a run builds from them
    extend/       the objects a user passes in: Action and RunContext, scenarios/, remedies/
    run/          the run: the controller, its standard actions, checkpoints, stopping
    (here)        the command-line scripts: train, report, sweep, bench, bench_whole (with
                  peers), and cli, the absl flags they share; configs/ holds flagfiles

tests/test_layout.py checks the order. The public API is `tapeloop` itself.
"""
