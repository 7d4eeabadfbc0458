"""Forgetting math against hand-computed values on small made-up matrices."""

import numpy as np
import pytest

from tapeloop.trainers.records import forgetting

# Three single-class phases (sorted order, one epoch), three classes.
# Row t: probe accuracy per class after phase t.
A = np.array([[0.9, 0.0, 0.1],
              [0.5, 0.8, 0.0],
              [0.2, 0.6, 1.0]])


def test_class_forgetting_is_best_so_far_minus_current():
    np.testing.assert_allclose(forgetting.class_forgetting(A), [0.7, 0.2, 0.0])
    np.testing.assert_allclose(forgetting.class_forgetting(A[:2]), [0.4, 0.0, 0.1])
    np.testing.assert_allclose(forgetting.class_forgetting(A[:1]), [0.0, 0.0, 0.0])


def test_average_forgetting_over_the_classes_trained_so_far():
    assert forgetting.average_forgetting(A, [0, 1, 2]) == pytest.approx((0.7 + 0.2 + 0.0) / 3)
    assert forgetting.average_forgetting(A[:2], [0, 1]) == pytest.approx(0.2)  # (0.4 + 0) / 2
    assert np.isnan(forgetting.average_forgetting(A, []))


def test_backward_transfer_lopez_paz_ranzato():
    # BWT = 1/(T-1) * sum_{i<T} (R[T, i] - R[i, i]) = ((0.2 - 0.9) + (0.6 - 0.8)) / 2
    tasks = [(0,), (1,), (2,)]
    assert forgetting.backward_transfer(A, tasks) == pytest.approx(-0.45)
    assert np.isnan(forgetting.backward_transfer(A[:1], tasks[:1]))
    # Tasks covering all classes (shuffled: phase = epoch): mean accuracy changes.
    all_classes = [(0, 1, 2)] * 3
    expected = ((A[2].mean() - A[0].mean()) + (A[2].mean() - A[1].mean())) / 2
    assert forgetting.backward_transfer(A, all_classes) == pytest.approx(expected)


def test_accuracy_matrix_summary_and_csv():
    m = forgetting.AccuracyMatrix(num_classes=3)
    for t, row in enumerate(A):
        m.add(row, task=(t,), step=10 * (t + 1), epoch=0, phase=t)
    s = m.summary()
    np.testing.assert_allclose(s["class_forgetting"], [0.7, 0.2, 0.0])
    assert s["average_forgetting"] == pytest.approx(0.3)
    assert s["bwt"] == pytest.approx(-0.45)
    lines = m.to_csv().splitlines()
    assert lines[0] == "step,epoch,phase,class_0,class_1,class_2"
    assert lines[2] == "20,0,1,0.500000,0.800000,0.000000"
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        m.add([1.0, 0.0], task=(0,), step=0, epoch=0, phase=0)


def test_sawtooth_spread_and_peak_inside_own_block():
    # Steps 1..6 trained phases 0,0,0,1,1,1; probes every step (state after step s-1).
    phase_of_step = {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1}
    curves = {s: np.array(v) for s, v in {
        1: [0.5, 0.1], 2: [0.8, 0.1], 3: [0.9, 0.0],  # class 0 learned in block 0
        4: [0.9, 0.5], 5: [0.6, 0.7], 6: [0.3, 0.7]}.items()}  # class 0 forgotten in block 1
    out = forgetting.sawtooth(curves, phase_of_step, start=0, end=6)
    np.testing.assert_allclose(out["spread"], [0.6, 0.7])
    # Class 0 peaks at 0.9 at step 3 (block 0) and ties at step 4 (block 1): inside, ties count.
    assert list(out["peak_in_own_block"]) == [True, True]
    assert list(out["peak_phase"]) == [0, 1]
    late = dict(curves) | {4: np.array([0.95, 0.5])}  # class 0 peaks after its block
    assert list(forgetting.sawtooth(late, phase_of_step, start=0, end=6)
                ["peak_in_own_block"]) == [False, True]
    with pytest.raises(ValueError, match="no probe steps"):
        forgetting.sawtooth(curves, phase_of_step, start=6, end=9)


def test_drift_growth_counts_within_blocks_only():
    phase_of_step = {s: (0 if s < 4 else 1) for s in range(8)}
    drift = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.35,  # block 0 (batches 0-3): rising
             5: 0.05, 6: 0.04, 7: 0.2, 8: 0.3}  # block 1 (batches 4-7): one fall
    out = forgetting.drift_growth(drift, phase_of_step)
    assert out == {"rising_pairs": 5, "pairs": 6, "rising_blocks": 2, "blocks": 2}
    assert forgetting.block_ids({0: 3, 1: 3, 2: 5, 3: 3}) == {0: 0, 1: 0, 2: 1, 3: 2}


def test_running_summary_equals_the_whole_matrix_formulas():
    rng = np.random.default_rng(0)
    m = forgetting.AccuracyMatrix(4)
    for i in range(60):
        task = (int(rng.integers(4)),) if i % 3 else (0, 1, 2, 3)
        m.add(rng.random(4), task=task, step=i, epoch=0, phase=task[0])
        got = m.summary()
        seen = sorted({c for t in m.tasks for c in t})
        np.testing.assert_allclose(got["class_forgetting"], forgetting.class_forgetting(m.matrix))
        np.testing.assert_allclose(got["average_forgetting"],
                                   forgetting.average_forgetting(m.matrix, seen))
        np.testing.assert_allclose(got["bwt"], forgetting.backward_transfer(m.matrix, m.tasks),
                                   rtol=1e-12, atol=1e-12, equal_nan=True)
    restored = forgetting.AccuracyMatrix.from_dict(m.to_dict())
    assert restored.summary()["bwt"] == pytest.approx(m.summary()["bwt"])
