"""tapeloop's trainers: explicit GradientTape training loops, compiled, logged per step.

The library: `config.Config`, `controller.train_and_evaluate`, and the pieces it
is made of (`model`, `optimizers`, `steps`, `loop`, `evaluation`, `writers`).
The scripts: `train` (one run) and `report` (runs side by side).
"""
