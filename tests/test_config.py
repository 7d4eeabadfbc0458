"""The frozen config refuses bad values with a line that echoes them."""

import dataclasses

import pytest

from tapeloop.trainers.records.config import Config


@pytest.mark.parametrize("kwargs,match", [
    (dict(learning_rate=0.0), r"learning_rate \(0.0\) must be positive"),
    (dict(learning_rate=-1e-3), r"learning_rate \(-0.001\)"),
    (dict(batch_size=0), r"batch_size \(0\) must be a positive integer"),
    (dict(epochs=-2), r"epochs \(-2\)"),
    (dict(steps_per_loop=0), r"steps_per_loop \(0\)"),
    (dict(optimizer="lbfgs"), r"optimizer \('lbfgs'\) must be one of sgd, rmsprop, adam"),
    (dict(order="random"), r"order \('random'\)"),
    (dict(dataset="cifar"), r"dataset \('cifar'\)"),
    (dict(validation_split=1.0), r"validation_split \(1.0\) must lie in \[0, 1\)"),
    (dict(validation_split=-0.1), r"validation_split"),
    (dict(hidden_sizes=()), r"hidden_sizes"),
    (dict(hidden_sizes=(100, 0)), r"hidden_sizes \(\(100, 0\)\)"),
    (dict(dropout=1.5), r"dropout \(1.5\)"),
    (dict(validation_scope="current_class"), r"needs order 'sorted'"),
])
def test_bad_values_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Config(**kwargs)


def test_config_is_frozen_and_serialises():
    c = Config(order="sorted", validation_scope="current_class")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epochs = 3
    assert '"validation_scope": "current_class"' in c.to_json()
