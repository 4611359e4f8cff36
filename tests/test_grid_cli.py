"""`train.py --seeds` and comma lists: a grid of networks in one run folder (nn_gpu.commands.grid)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli

from nn_gpu.api import load_model
from nn_gpu.commands.train import train_main
from nn_gpu.config import RunConfig
from nn_gpu.device import resolve_device
from nn_gpu.run import Run, load_run_data

BASE = ["--device", "cpu", "--dev-size", "300", "--hidden", "12", "--iterations", "30", "--batch-size", "64",
        "--log-interval", "10", "--dtype", "float64"]  # fmt: skip


def test_a_grid_writes_every_network_a_table_a_picture_and_the_best(tmp_path):
    code, out, err = run_cli(
        train_main,
        [*BASE, "--seeds", "0-1", "--alpha", "0.1,0.02", "--dropout", "0,0.2", "0,0.5", "--output-dir", tmp_path],
    )
    assert (code, err) == (0, "")
    assert "training 8 networks at once" in out and "seeds 0, 1 x learning rates 0.1, 0.02 x dropout rates" in out
    table = pd.read_csv(tmp_path / "results.csv", keep_default_na=False)
    assert len(table) == 8 and list(table["network"]) == list(range(8))
    assert list(table["seed"]) == [0, 1] * 4 and list(table["learning_rate"]) == [0.1] * 4 + [0.02] * 4
    assert list(table["dropout"]) == ["0,0.2", "0,0.2", "0,0.5", "0,0.5"] * 2
    for k, row in table.iterrows():
        folder = tmp_path / "networks" / f"{k:02d}"
        history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [h["iteration"] for h in history] == [10, 20, 30]
        assert max(h["dev_accuracy"] for h in history) == row["best_dev_accuracy"]
        assert history[-1]["dev_accuracy"] == row["dev_accuracy"]
        net = load_model(folder / "best_model.npz", "cpu")
        assert net.evaluate(*_dev())[1] == pytest.approx(row["best_dev_accuracy"], abs=1e-12)
    best = int(np.argmax(table["best_dev_accuracy"]))
    assert (tmp_path / "best_model.npz").read_bytes() == (
        tmp_path / "networks" / f"{best:02d}" / "best_model.npz"
    ).read_bytes()
    assert f"best: network {best} (seed {best % 2}," in out
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"


def _dev():
    data = load_run_data(RunConfig(dev_size=300, seed=0, hidden=(12,)))
    return data.dev.X, data.dev.y


def test_the_first_seeds_network_is_the_run_of_that_seed_alone(tmp_path):
    assert run_cli(train_main, [*BASE, "--seeds", "3,5", "--output-dir", tmp_path / "grid"])[0] == 0
    assert run_cli(train_main, [*BASE, "--seed", "3", "--output-dir", tmp_path / "alone"])[0] == 0
    grid, alone = (
        load_model(tmp_path / "grid/networks/00/model.npz", "cpu"),
        load_model(tmp_path / "alone/model.npz", "cpu"),
    )
    np.testing.assert_array_equal(grid.flat, alone.flat)
    other = load_model(tmp_path / "grid/networks/01/model.npz", "cpu")
    assert not np.array_equal(other.flat, grid.flat)


def test_each_seed_starts_from_the_weights_its_own_run_draws():
    config = RunConfig(dev_size=300, seed=0, hidden=(12,))
    run = Run.start(config, load_run_data(config), None)
    for seed in (0, 7):
        own = load_run_data(config.replace(seed=seed))
        expected = Run.start(config.replace(seed=seed), own, None).network(resolve_device("cpu"), 1)[0]
        np.testing.assert_array_equal(np.concatenate([p.ravel() for p in run.initial_parameters(seed)]), expected.flat)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-norm"], "error: --batch-norm trains one network: networks with batch norm cannot be stacked"),
        (["--save-every", "5"], "error: --save-every trains one network: a grid is not resumable"),
        (["--augment", "shift"], "error: --augment trains one network:"),
    ],
)
def test_what_a_grid_refuses_is_one_line_and_exit_2(tmp_path, flags, message):
    code, out, err = run_cli(train_main, [*BASE, "--seeds", "0-1", *flags, "--output-dir", tmp_path / "run"])
    assert code == 2 and err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("seeds", ["3-1", "a", "1,1", "-2"])
def test_bad_seed_lists_are_refused(seeds):
    with pytest.raises(SystemExit) as stopped:
        train_main([*BASE, "--seeds", seeds])
    assert stopped.value.code == 2


def test_seed_lists_and_comma_numbers_parse():
    from nn_gpu.commands.toolkit import numbers_in, seed_list
    from nn_gpu.config import POSITIVE

    assert seed_list("0-3,8,10-11") == (0, 1, 2, 3, 8, 10, 11)
    assert numbers_in(POSITIVE)("0.1") == 0.1 and numbers_in(POSITIVE)("0.1,0.05") == (0.1, 0.05)


def test_a_grid_folder_is_refused_unless_overwrite_which_removes_it(tmp_path):
    flags = [*BASE, "--seeds", "0-1", "--output-dir", tmp_path]
    assert run_cli(train_main, flags)[0] == 0
    code, _, err = run_cli(train_main, [*BASE, "--output-dir", tmp_path])
    assert code == 2 and "holds a run already (best_model.npz, networks, results.csv, results.png)" in err
    assert run_cli(train_main, [*BASE, "--output-dir", tmp_path, "--overwrite"])[0] == 0
    assert not (tmp_path / "networks").exists() and not (tmp_path / "results.csv").exists()
