"""Logging tier for the forgetting instruments: probe, drift, matrix, layout, HParams."""

import numpy as np
import pytest
from tensorboard.plugins.custom_scalar import layout_pb2

from helpers import read_events, tags_by_plugin


def test_probe_and_drift_tags_at_every_multiple_of_the_cadence(small_sorted_run):
    run_dir, results, config = small_sorted_run
    scalars = read_events(run_dir)
    k, total = config.eval_every_steps, results["steps"]
    assert total == 60  # 18 training images per class, batch 6: 3 steps x 10 classes x 2
    cadence = set(range(0, total + 1, k))
    probe_tags = [t for t in scalars if t.startswith("probe/")]
    drift_tags = [t for t in scalars if t.startswith("weights/drift/")]
    assert len(probe_tags) == 2 + 2 * 10  # overall + per class, accuracy and loss
    assert {"weights/drift/from_init/model", "weights/drift/from_phase_start/dense_0/kernel",
            "weights/drift/relative/logits/kernel", "weights/drift/update_norm/model",
            "weights/drift/grad_norm/dense_0/bias"} <= set(drift_tags)
    assert not any(t.startswith("weights/drift/relative/") and t.endswith("/bias")
               for t in drift_tags)
    for tag in drift_tags:
        assert set(scalars[tag]) == cadence, tag  # exactly the cadence, no gaps
    boundaries = {3 * (i + 1) for i in range(20)}  # every class block ends after 3 steps
    for tag in probe_tags:
        assert set(scalars[tag]) == cadence | boundaries, tag  # cadence plus phase ends
    # Before any update the update and gradient norms are zero, afterwards they are not.
    assert scalars["weights/drift/update_norm/model"][0] == 0.0
    assert scalars["weights/drift/update_norm/model"][3] > 0.0
    assert scalars["weights/drift/from_init/model"][0] == 0.0


def test_forgetting_metrics_at_every_phase_boundary(small_sorted_run):
    run_dir, results, _ = small_sorted_run
    scalars = read_events(run_dir)
    boundaries = [3 * (i + 1) for i in range(20)]
    for tag in ["forgetting/average"] + [f"forgetting/row/class_{c}" for c in range(10)] + [
            f"forgetting/class_{c}" for c in range(10)]:
        assert sorted(scalars[tag]) == boundaries, tag
    assert sorted(scalars["forgetting/bwt"]) == boundaries[1:]  # needs two rows
    # The row written at a boundary is the probe at that step.
    for c in range(10):
        for step in boundaries:
            assert scalars[f"forgetting/row/class_{c}"][step] == pytest.approx(
                scalars[f"probe/accuracy/class_{c}"][step])
    csv = (run_dir / "accuracy_matrix.csv").read_text().splitlines()
    assert len(csv) == 1 + 20 and csv[1].startswith("3,0,0,")
    assert csv[-1].startswith("60,1,9,")
    assert results["average_forgetting"] == pytest.approx(scalars["forgetting/average"][60])
    assert results["bwt"] == pytest.approx(scalars["forgetting/bwt"][60])
    assert scalars["result/average_forgetting"][60] == pytest.approx(results["average_forgetting"])


def test_drift_agrees_with_numpy_on_the_saved_weights(small_sorted_run):
    run_dir, results, _ = small_sorted_run
    scalars = read_events(run_dir)
    initial = np.load(run_dir / "weights" / "initial.npz")
    final = np.load(run_dir / "weights" / "final.npz")
    step = results["steps"]
    total_sq = 0.0
    for name in initial.files:
        distance = np.linalg.norm(final[name].astype(np.float64) - initial[name])
        total_sq += distance ** 2
        assert scalars[f"weights/drift/from_init/{name}"][step] == pytest.approx(distance, rel=1e-5)
    assert scalars["weights/drift/from_init/model"][step] == pytest.approx(
        np.sqrt(total_sq), rel=1e-5)


def test_layout_hparams_text_images_histograms_are_written(small_sorted_run):
    run_dir, _, config = small_sorted_run
    by_plugin = tags_by_plugin(run_dir)
    assert "config" in by_plugin["text"]
    assert "forgetting/accuracy_matrix" in by_plugin["images"]
    assert {"weights/dense_0/kernel", "weights/logits/bias"} <= set(by_plugin["histograms"])
    assert by_plugin["hparams"]  # the session start
    assert by_plugin["custom_scalars"]
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    layout_tag = by_plugin["custom_scalars"][0]
    raw = acc.Tensors(layout_tag)[0].tensor_proto.string_val[0]
    layout = layout_pb2.Layout.FromString(raw)
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts["probe accuracy, every class"] == [r"probe/accuracy/(class|task)_\d+"]
    # The run holds its session (named by its directory, every setting); the experiment
    # (the metrics, what differs) lies beside the runs, in one file.
    content = b"".join(acc.SummaryMetadata(t).plugin_data.content for t in by_plugin["hparams"])
    assert run_dir.name.encode() in content and b"learning_rate" in content
    # The run passes its own data: the noise data set's settings did not apply.
    assert b"noise_dim" not in content
    beside = list(run_dir.parent.glob("events.out.tfevents.*.hparams"))
    assert len(beside) == 1
    experiment = event_accumulator.EventAccumulator(str(beside[0]), size_guidance={"tensors": 0})
    experiment.Reload()
    content = b"".join(experiment.SummaryMetadata(t).plugin_data.content
                       for t in experiment.Tags()["tensors"])
    assert b"result/test_accuracy" in content and b"result/bwt" in content
    assert b"learning_rate" in content and b"order" in content


def test_tracing_counts_are_logged_and_constant_after_the_first_epoch(small_sorted_run):
    """Across 20 class blocks, partial batches, validation and test sets of other sizes."""
    run_dir, results, _ = small_sorted_run
    scalars = read_events(run_dir)
    for name in ("train_loop", "evaluate", "probe"):
        counts = scalars[f"workings/tracing/{name}"]
        assert sorted(counts) == [30, 60]  # both epoch ends
        assert set(counts.values()) == {1.0}, name
    assert results["tracing"] == {"train_loop": 1, "evaluate": 1, "probe": 1}


def test_each_probe_step_is_written_once_on_and_off_the_cadence(tmp_path):
    """Phase ends every 3 steps, probes every 4: the ends on the cadence (12, 24, ...)
    are probed by the loop and not written again; the others get their own point."""
    from tensorboard.backend.event_processing import event_accumulator

    from tapeloop.data import splits
    from tapeloop.trainers.run import controller
    from tapeloop.trainers.records.config import Config
    from helpers import SMALL_SORTED, fake_mnist

    config = Config(**{**SMALL_SORTED, "eval_every_steps": 4, "epochs": 1})
    data = splits.mnist_splits(fake_mnist(n_train=200, n_test=60), validation_split=0.1)
    controller.train_and_evaluate(config, tmp_path / "run", data=data, verbose=False)
    acc = event_accumulator.EventAccumulator(str(tmp_path / "run"), size_guidance={"tensors": 0})
    acc.Reload()
    steps = [e.step for e in acc.Tensors("probe/accuracy/class_0")]
    ends = {3 * (i + 1) for i in range(10)}
    assert len(steps) == len(set(steps))  # one point per step
    assert set(steps) == set(range(0, 31, 4)) | ends
    assert ends & set(range(0, 31, 4)) == {12, 24}  # both kinds of phase end occur
