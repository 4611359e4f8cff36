"""RunConfig: one run's settings, checked once from one table of ranges, as flags, from Python and
from a checkpoint, older checkpoints included."""

import dataclasses
import math

import numpy as np
import pytest

import nn_gpu
from nn_gpu.config import ADDED, CONSTRAINTS, ConfigError, Interval, RunConfig
from nn_gpu.training import TrainingPlan


def test_the_defaults_are_the_notebooks_job():
    config = RunConfig()
    assert (config.iterations, config.epochs, config.batch_size, config.learning_rate) == (500, None, None, 0.10)
    assert config.length == ("iterations", 500)
    by_epochs = RunConfig(epochs=3)
    assert (by_epochs.iterations, by_epochs.batch_size, by_epochs.length) == (None, 64, ("epochs", 3))
    assert RunConfig(epochs=3, batch_size=16).batch_size == 16


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"learning_rate": 0}, "learning_rate must be a finite number above 0, got 0"),
        ({"learning_rate": math.nan}, "learning_rate must be a finite number above 0, got nan"),
        ({"momentum": 1.0}, "momentum must be at least 0 and below 1, got 1.0"),
        ({"weight_decay": -1e-4}, "weight_decay must be a finite number, 0 or more, got -0.0001"),
        ({"label_smoothing": 1}, "label_smoothing must be at least 0 and below 1, got 1"),
        ({"seed": True}, "seed must be 0 or more, got True"),
        ({"seed": 1.5}, "seed must be 0 or more, got 1.5"),
        ({"iterations": 0}, "iterations must be at least 1, got 0"),
        ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
        ({"hidden": (16, 0)}, "hidden must be widths like 10 or 256,128, each at least 1, got (16, 0)"),
        ({"hidden": [16]}, "hidden must be widths like 10 or 256,128, each at least 1, got [16]"),
        ({"dropout": (0.5,)}, "dropout must be rates like 0.2,0.5 (input, hidden), each at least 0 and below 1"),
        ({"dropout": (0.2, 1.0)}, "dropout must be rates like 0.2,0.5"),
        ({"optimizer": "lbfgs"}, "optimizer must be one of sgd, adam, adamw, got 'lbfgs'"),
        (
            {"augment": "rotate"},
            "augment must be a recipe like affine, affine+elastic or shift+flip+erase=0.3, got 'rotate'",
        ),
        ({"scale": "log"}, "scale must be one of standard, minmax, none, got 'log'"),
        ({"data": ""}, "data must be a name, got ''"),
        ({"epochs": 2, "iterations": 5}, "give epochs or iterations, not both"),
        ({"optimizer": "adam", "momentum": 0.9}, "--momentum is SGD's; --optimizer adam keeps its own moments"),
        ({"dropout": (0.1, 0.2, 0.3)}, "--dropout: 3 dropout rates for 1 hidden layers"),
        ({"early_stopping": 3, "dev_size": 0}, "--early-stopping needs a dev set to watch"),
    ],
)
def test_every_setting_is_checked_when_a_config_is_made(changes, message):
    with pytest.raises(ConfigError) as refused:
        RunConfig(**changes)
    assert str(refused.value).startswith(message)
    assert isinstance(refused.value, ValueError)  # from Python, a ValueError as any bad argument


def test_every_setting_has_a_constraint():
    assert {field.name for field in dataclasses.fields(RunConfig)} == set(CONSTRAINTS)
    assert set(ADDED) <= set(CONSTRAINTS)


def test_a_config_round_trips_through_a_checkpoints_json_and_makes_the_plan():
    config = RunConfig(hidden=(32, 16), epochs=4, optimizer="adamw", dropout=(0.2, 0.5), label_smoothing=0.1)
    saved = config.to_dict()
    assert saved["hidden"] == [32, 16] and saved["dropout"] == [0.2, 0.5]  # JSON-ready
    assert RunConfig.from_dict(saved) == config
    plan = config.plan()
    assert plan == TrainingPlan(
        learning_rate=0.10, iterations=None, epochs=4, batch_size=64, dropout=(0.2, 0.5), label_smoothing=0.1
    )


def test_an_older_checkpoints_settings_load_with_defaults_and_old_names():
    older = RunConfig(seed=7, learning_rate=0.05).to_dict()
    for name in ADDED:
        del older[name]
    older["alpha"] = older.pop("learning_rate")
    loaded = RunConfig.from_dict(older)
    assert (loaded.seed, loaded.learning_rate, loaded.optimizer, loaded.dropout) == (7, 0.05, "sgd", None)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d.pop("seed"), "settings missing: seed"),
        (lambda d: d.update(surprise=1), "unknown settings: surprise"),
        (lambda d: d.update(alpha="fast"), "unknown settings: alpha"),  # beside learning_rate: not the old name
        (lambda d: d.update(seed=[1, 2]), "seed must be 0 or more, got [1, 2]"),
    ],
)
def test_a_damaged_checkpoints_settings_are_refused(damage, message):
    saved = RunConfig().to_dict()
    damage(saved)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RunConfig.from_dict(saved)


def test_intervals_say_their_range_in_train_pys_words_and_in_scikit_learns():
    assert Interval(0, ends="()").words() == "a finite number above 0"
    assert Interval(0, 1, "(]").words() == "above 0 and at most 1"
    assert Interval(0, 1, "()").notation() == "a finite number in (0, 1)"
    assert Interval(1, kind=int).notation() == "a whole number of at least 1"
    whole = Interval(1, kind=int)
    assert whole.holds(3) and whole.holds(np.int64(3)) and not whole.holds(3.0) and not whole.holds(True)
    closed = Interval(0, 1, "[]")
    assert closed.holds(0) and closed.holds(1) and not closed.holds(math.inf) and not closed.holds("0.5")


def test_nn_gpu_train_checks_its_settings_as_the_flags_are_checked():
    net = nn_gpu.Network.create(hidden=(4,), device="cpu", seed=0)
    X, y = np.zeros((784, 8), dtype=np.float32), np.zeros(8, dtype=np.int64)
    with pytest.raises(ValueError, match="learning_rate must be a finite number above 0, got -0.1"):
        nn_gpu.train(net, X, y, learning_rate=-0.1, log=None)
    with pytest.raises(ValueError, match="give epochs or iterations, not both"):
        nn_gpu.train(net, X, y, epochs=1, iterations=3, log=None)


def test_train_pys_flags_become_its_config(tmp_path, monkeypatch):
    from nn_gpu.commands.train import run_config, train_parser

    monkeypatch.chdir(tmp_path)
    flags = ["--lr", "0.5", "--hidden", "8,4", "--dropout", "0.1,0.2", "--data", "digits.csv", "--quiet"]
    config = run_config(train_parser().parse_args(flags))
    assert (config.learning_rate, config.hidden, config.dropout) == (0.5, (8, 4), (0.1, 0.2))
    assert config.data == str(tmp_path / "digits.csv")  # absolute: a resumed run finds it from anywhere
    assert run_config(train_parser().parse_args([])).data == "sample"
    dry = run_config(train_parser().parse_args(["--epochs", "5", "--dry-run"]))
    assert (dry.iterations, dry.epochs, dry.batch_size) == (3, None, None)  # 3 full-batch steps, as without --epochs
