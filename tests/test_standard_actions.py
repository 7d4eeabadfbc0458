"""Unit tier: the controller's loop over actions, with a fake trainer (no TensorFlow run).

The loop is `controller.run_epochs`; the built-in actions are `standard_actions`.
A fake trainer counts steps and records the size of each compiled call, so the cut
points, the order of events and the resume bookkeeping are checked exactly.
"""

import types

import numpy as np
import pytest

from tapeloop.data import pipelines
from tapeloop.trainers.extend import actions
from tapeloop.trainers.run import controller, standard_actions


class FakeTrainer:
    def __init__(self, step=0):
        self.step, self.calls = step, []

    def train(self, k):
        assert k >= 1
        self.calls.append((self.step, k))
        self.step += k
        return {"loss_sum": 2.0 * k, "correct": 1.0 * k, "count": float(k), "loss": 2.0,
                "accuracy": 1.0, "first_bad_step": -1.0, "bad_kind": -1.0}


class Recorder(actions.Action):
    def __init__(self, log, **kw):
        super().__init__(**kw)
        self.log = log

    def on_begin(self, step, context):
        self.log.append(("begin", step))

    def on_step(self, step, context):
        self.log.append(("step", step))

    def on_epoch_start(self, step, epoch, context):
        self.log.append(("epoch_start", step, epoch))

    def on_phase_start(self, step, phase, context):
        self.log.append(("phase_start", step, phase))

    def on_phase_end(self, step, phase, context):
        self.log.append(("phase_end", step, phase))

    def on_epoch_end(self, step, epoch, context):
        self.log.append(("epoch_end", step, epoch))

    def on_end(self, step, context):
        self.log.append(("end", step))


def plan(epoch=0):  # two phases a epoch: class 0 for 3 steps, class 1 for 2
    return pipelines.EpochPlan(phases=(0, 1), steps=(3, 2))


def run(trainer, acts, *, epochs=2, steps_per_loop=4, finished=lambda end: False,
        progress=None):
    phases = types.SimpleNamespace(epoch_plan=plan, steps_per_epoch=5)  # a Plan's two fields
    controller.run_epochs(trainer, acts, None, epochs=epochs, plan=phases,
                          steps_per_loop=steps_per_loop,
                          finished=finished, progress=progress or standard_actions.Progress())


def test_calls_stop_at_phase_ends_and_at_every_step_an_action_asks_for():
    trainer, log = FakeTrainer(), []
    run(trainer, [Recorder(log, on_steps=(2, 7), every_steps=4)])
    # Phase ends 3, 5, 8, 10; asked: 2, 4, 7, 8.
    assert trainer.calls == [(0, 2), (2, 1), (3, 1), (4, 1), (5, 2), (7, 1), (8, 2)]
    assert [e for e in log if e[0] == "step"] == [("step", s) for s in (2, 4, 7, 8)]
    assert log[:3] == [("begin", 0), ("epoch_start", 0, 0), ("phase_start", 0, 0)]
    assert [e for e in log if e[0] not in ("step",)][3:] == [
        ("phase_end", 3, 0), ("phase_start", 3, 1), ("phase_end", 5, 1), ("epoch_end", 5, 0),
        ("epoch_start", 5, 1), ("phase_start", 5, 0), ("phase_end", 8, 0),
        ("phase_start", 8, 1), ("phase_end", 10, 1), ("epoch_end", 10, 1), ("end", 10)]


def test_without_cuts_a_call_is_at_most_steps_per_loop_and_never_crosses_a_phase():
    trainer = FakeTrainer()
    run(trainer, [], steps_per_loop=2)
    assert trainer.calls == [(0, 2), (2, 1), (3, 2), (5, 2), (7, 1), (8, 2)]


def test_a_resumed_loop_skips_what_is_finished_and_restarts_inside_the_phase():
    trainer, log = FakeTrainer(step=6), []
    run(trainer, [Recorder(log)], finished=lambda end: end < 6)
    assert trainer.calls == [(6, 2), (8, 2)]
    # Inside class 0's block of epoch 1: no phase start for it (it began before).
    assert log[:3] == [("begin", 6), ("epoch_start", 6, 1), ("phase_end", 8, 0)]


def test_checkpointing_finished_redoes_a_boundary_whose_end_was_not_saved():
    ckpt = standard_actions.Checkpointing(None, standard_actions.Progress(), every_steps=0,
                                          steps_per_loop=4, host_state=dict, flush=lambda: 0)
    ckpt.start_step, ckpt.ends_done_at = 5, 3  # saved at step 5 by the cadence, end not done
    assert ckpt.finished(3) and not ckpt.finished(5) and not ckpt.finished(8)
    ckpt.ends_done_at = 5  # the epoch end at 5 was saved
    assert ckpt.finished(5)
    trainer, log = FakeTrainer(step=5), []
    run(trainer, [Recorder(log)], finished=lambda end: end < 5)  # the first case
    assert log[:4] == [("begin", 5), ("epoch_start", 5, 0), ("phase_end", 5, 1),
                       ("epoch_end", 5, 0)]


def test_the_epoch_sums_restart_each_epoch():
    progress = standard_actions.Progress()
    seen = []

    class Sums(actions.Action):
        def on_epoch_end(self, step, epoch, context):
            seen.append(tuple(progress.sums))

    run(FakeTrainer(), [Sums()], progress=progress)
    assert seen == [(10.0, 5.0, 5.0), (10.0, 5.0, 5.0)]


def test_stop_after_at_or_before_the_resumed_step_trains_nothing():
    stop = standard_actions.StopAfter(4, checkpointing=None)
    trainer = FakeTrainer(step=6)
    with pytest.raises(standard_actions.StoppedAfter, match="already at step 6, at or past"):
        run(trainer, [stop])
    assert trainer.calls == []


def test_profiling_resumed_inside_its_range_starts_at_once_and_a_short_run_stops_it(monkeypatch):
    events, said = [], []
    monkeypatch.setattr(standard_actions.tf.profiler.experimental, "start",
                        lambda logdir: events.append(("start", trainer.step)))
    monkeypatch.setattr(standard_actions.tf.profiler.experimental, "stop",
                        lambda: events.append(("stop", trainer.step)))
    trainer = FakeTrainer(step=3)
    run(trainer, [standard_actions.Profiling(1, 7, None, said.append)],
        finished=lambda end: end < 3)
    assert events == [("start", 3), ("stop", 7)]
    assert said == ["profiler trace of steps 3-7 written to ./plugins/profile"]
    events.clear(), said.clear()
    trainer = FakeTrainer()
    run(trainer, [standard_actions.Profiling(8, 100, None, said.append)])
    assert events == [("start", 8), ("stop", 10)]
    assert said == ["profiler trace of steps 8-10 written to ./plugins/profile "
                    "(the run ended before step 100)"]


def test_an_inspected_step_runs_alone_through_the_call_it_hands_the_trainer():
    class Taking(FakeTrainer):
        def run_next_step_with(self, call):
            self.taken = self.step

    trainer = Taking()
    run(trainer, [standard_actions.Inspection({0, 6}, trainer, None, [], print)])
    assert (0, 1) in trainer.calls and (6, 1) in trainer.calls and trainer.taken == 6
    assert np.sum([k for _, k in trainer.calls]) == 10
