"""The run: the controller around the compiled loop, its standard actions, checkpoints, stopping."""
