"""The reservoir remedy: reservoir sampling, mixed batches, and exact resume."""

import types

import numpy as np
import pytest
import tensorflow as tf

from helpers import run_train_here as run_train
from tapeloop.trainers.extend.remedies import reservoir


def _add_ids(memory, ids, batch=7):
    for i in range(0, len(ids), batch):
        chunk = np.asarray(ids[i:i + batch], np.int32)
        memory.add(tf.constant(chunk[:, None].astype(np.float32)), tf.constant(chunk))


def test_memory_fills_in_order_then_keeps_a_uniform_sample():
    memory = reservoir.ReservoirMemory(10, 1, seed=0)
    _add_ids(memory, list(range(10)))
    assert int(memory.seen) == 10
    np.testing.assert_array_equal(memory.labels.numpy(), np.arange(10))
    np.testing.assert_array_equal(memory.images.numpy()[:, 0], np.arange(10))
    # Reservoir sampling keeps each of N examples with probability C / N, early or late.
    n, c, runs = 100, 10, 120
    kept = np.zeros(n)
    for seed in range(runs):
        memory = reservoir.ReservoirMemory(c, 1, seed=seed)
        _add_ids(memory, list(range(n)), batch=20)
        labels = memory.labels.numpy()
        assert len(set(labels)) == c  # no slot written twice with the same example
        np.testing.assert_array_equal(memory.images.numpy()[:, 0], labels)
        kept[labels] += 1
    expected = runs * c / n  # 12 per example; a quarter's mean has a std of about 0.6
    for part in np.split(kept, 4):  # first, second, third, last quarter of the stream
        assert abs(part.mean() - expected) < 0.25 * expected, kept


def test_the_remedy_mixes_new_and_remembered_examples_then_remembers():
    remedy = reservoir.ReservoirReplay(capacity=5, fraction=3 / 7)
    assert remedy.stream_batch_size(7) == 4
    remedy.context = types.SimpleNamespace(batch_size=7, seed=1,
                                           scenario=types.SimpleNamespace(input_dim=1))
    remedy.build(model=None)
    seen_batches = []
    for first in (0, 100, 200):
        ids = np.arange(first, first + 4, dtype=np.int32)
        mixed = remedy.mix({"image": tf.constant(ids[:, None].astype(np.float32)),
                            "label": tf.constant(ids), "phase": tf.constant(0)})
        seen_batches.append(mixed["label"].numpy())
        np.testing.assert_array_equal(mixed["image"].numpy()[:, 0], seen_batches[-1])
    assert [len(b) for b in seen_batches] == [4, 7, 7]  # empty memory: nothing replayed
    np.testing.assert_array_equal(seen_batches[1][:4], [100, 101, 102, 103])
    assert set(seen_batches[1][4:]) <= {0, 1, 2, 3}  # replayed: only what was seen before
    assert set(seen_batches[2][4:]) <= {0, 1, 2, 3, 100, 101, 102, 103}
    assert int(remedy.memory.seen) == 12


def test_replay_count_and_bad_settings():
    assert reservoir.ReservoirReplay(fraction=0.5).count(100) == 50
    assert reservoir.ReservoirReplay(fraction=0.01).count(2) == 1
    assert reservoir.ReservoirReplay(fraction=0.99).count(2) == 1
    with pytest.raises(ValueError, match="replay_fraction"):
        reservoir.ReservoirReplay(fraction=1.0)
    with pytest.raises(ValueError, match="capacity"):
        reservoir.ReservoirReplay(capacity=0)


NOISE = ["--dataset=noise", "--noise_examples=300", "--hidden_sizes=16", "--batch_size=30",
         "--probe_per_class=20", "--eval_every_steps=3", "--order=replay",
         "--replay_capacity=40", "--epochs=2", "--deterministic", "--checkpoint_every_steps=4"]


def test_replay_run_resumes_exactly_with_its_memory(tmp_path):
    straight = run_train(*NOISE, f"--logdir={tmp_path}", "--run_name=straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert "(15 new + 15 remembered)" in straight.stdout
    assert "remedies: reservoir (capacity 40, fraction 0.5)" in straight.stdout
    stopped = run_train(*NOISE, f"--logdir={tmp_path}", "--run_name=resumed",
                        "--stop_after_steps=13")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    resumed = run_train(*NOISE, f"--logdir={tmp_path}", "--run_name=resumed")
    assert resumed.returncode == 0 and "checkpoint at step 13" in resumed.stdout
    a = np.load(tmp_path / "straight" / "weights" / "final.npz")
    b = np.load(tmp_path / "resumed" / "weights" / "final.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    # The memory is in the checkpoint: restored, it equals the straight run's.
    memories = []
    for name in ("straight", "resumed"):
        path = tf.train.latest_checkpoint(str(tmp_path / name / "checkpoints"))
        reader = tf.train.load_checkpoint(path)
        keys = [k for k in reader.get_variable_to_shape_map() if "/memory/" in k]
        assert any("images" in k for k in keys) and any("seen" in k for k in keys)
        memories.append({k: reader.get_tensor(k) for k in keys})
    for k in memories[0]:
        np.testing.assert_array_equal(memories[0][k], memories[1][k])


def test_an_inspected_replay_step_dumps_the_mixed_batch(tmp_path):
    from helpers import read_events
    from tapeloop.trainers.instruments import step_dumps

    proc = run_train(*NOISE, "--epochs=1", "--inspect_steps=0,5", f"--logdir={tmp_path}",
                     "--run_name=run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = read_events(tmp_path / "run")
    sizes = []
    for step in (0, 5):
        dump = step_dumps.load(tmp_path / "run" / "inspect" / f"step_{step}.npz")
        sizes.append(len(dump["label"]))
        assert dump["logits"].shape[0] == dump["image"].shape[0] == sizes[-1]
        np.testing.assert_allclose(dump["example_loss"].mean(), events["train/loss"][step],
                                   rtol=1e-5)
    assert sizes == [15, 30]  # empty memory at step 0; 15 new + 15 remembered at step 5
