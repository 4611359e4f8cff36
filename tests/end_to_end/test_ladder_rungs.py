"""The ladder's rungs through train.py: --optimizer, --dropout and --augment, their refusals, their
checkpoints (a resumed run ends bit-identical to one never stopped), augmentations.png, and the
ladder script's --quick run."""

import json
import shlex

import numpy as np
import pytest
from helpers import ROOT, run_script, synthetic_csv, train_in_process

from nn_gpu.bench.ladder import rungs
from nn_gpu.checkpoint import load_checkpoint, load_model
from nn_gpu.commands.train import train_main, train_parser

RECIPE = ["--optimizer", "adamw", "--alpha", "0.002", "--weight-decay", "0.01", "--dropout", "0.2,0.5", "--augment", "affine+elastic", "--label-smoothing", "0.1"]  # fmt: skip


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory):
    return synthetic_csv(tmp_path_factory.mktemp("data") / "train.csv", 500, seed=5)


def run(train_csv, out, *flags):
    return train_in_process(train_csv, out, *flags, hidden="16,8")


def test_the_recipe_resumes_bit_identically_and_keeps_adams_moments(train_csv, tmp_path, capsys):
    assert run(train_csv, tmp_path / "short", "--epochs", 2, *RECIPE) == 0
    assert "; dropout 0.2,0.5; affine+elastic distortions of each batch; label smoothing 0.1" in capsys.readouterr().out
    _, _, moments, progress, config, *_ = load_checkpoint(tmp_path / "short" / "checkpoint.npz")
    assert len(moments) == 2 and (moments[1] >= 0).all() and moments[1].any()  # m and v; v holds squares
    assert config.optimizer == "adamw" and config.dropout == (0.2, 0.5) and config.augment == "affine+elastic"
    assert train_main(["--resume", str(tmp_path / "short"), "--epochs", "3"]) == 0
    assert run(train_csv, tmp_path / "long", "--epochs", 3, *RECIPE) == 0
    for a, b in zip(load_model(tmp_path / "short" / "model.npz")[1], load_model(tmp_path / "long" / "model.npz")[1]):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "long" / "augmentations.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sgd_checkpoints_keep_one_moment_and_older_ones_still_resume(train_csv, tmp_path):
    assert run(train_csv, tmp_path / "sgd", "--iterations", 4, "--momentum", 0.9) == 0
    path = tmp_path / "sgd" / "checkpoint.npz"
    assert len(load_checkpoint(path)[2]) == 1 and not (tmp_path / "sgd" / "augmentations.png").exists()
    with np.load(path) as npz:  # as written before --optimizer, --dropout and --augment existed
        arrays = dict(npz)
    config = json.loads(str(arrays["config"]))
    for name in ("optimizer", "dropout", "augment", "label_smoothing"):
        del config[name]
    arrays["config"] = np.array(json.dumps(config))
    np.savez(path, **arrays)
    assert train_main(["--resume", str(tmp_path / "sgd"), "--iterations", "6"]) == 0
    assert load_checkpoint(path)[3].iteration == 6


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dropout", "0.5"], "give the input's rate and the hidden layers', e.g. 0,0.5 for hidden units only"),
        (["--dropout", "0.2,1"], "every rate must be at least 0 and below 1, got '0.2,1'"),
        (["--dropout", "0.2,x"], "expected rates like 0.2,0.5 (input, hidden), got '0.2,x'"),
        (["--dropout", "0.1,0.2,0.3,0.4"], "--dropout: 4 dropout rates for 2 hidden layers"),
        (["--optimizer", "adam", "--momentum", "0.9"], "--momentum is SGD's; --optimizer adam keeps its own moments"),
        (["--augment", "rotate"], "argument --augment: 'rotate' is not a part of a distortion: use affine, rotation"),
        (["--augment", "flip+erase=2"], "argument --augment: 'erase=2': erase must be from 0 to 1"),
        (["--average-weights", "1"], "argument --average-weights: must be at least 0 and below 1, got 1"),
        (["--label-smoothing", "1"], "argument --label-smoothing: must be at least 0 and below 1, got 1"),
    ],
)
def test_bad_recipes_are_refused_in_one_line_before_any_folder(train_csv, tmp_path, capsys, flags, message):
    try:
        code = run(train_csv, tmp_path / "out", *flags)
    except SystemExit as stopped:  # argparse's own refusal
        code = stopped.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_each_rung_is_a_train_py_command_that_changes_one_thing():
    parser = train_parser()
    ladder = rungs(20)
    settings = [vars(parser.parse_args(flags)) for _, flags, _ in ladder]  # exits on a flag train.py lacks
    changed = [
        {name for name in after if after[name] != settings[base][name]}
        for after, (_, _, base) in zip(settings[2:], ladder[2:])
    ]
    assert [base for _, _, base in ladder] == [None, 0, 1, 2, 3, 4, 5, 6, 5, 4, 9, 10, 11, 11, 9, 14, 15, 11]
    assert changed == [
        {"hidden"},
        {"weight_decay", "lr_schedule"},
        {"optimizer", "learning_rate", "momentum", "weight_decay"},  # AdamW replaces SGD with momentum
        {"dropout"},
        {"augment"},
        {"augment"},
        {"hidden"},
        {"label_smoothing"},
        {"hidden"},
        {"augment"},
        {"batch_norm"},
        {"average_weights"},
        {"augment"},
        {"hidden"},
        {"average_weights"},
        {"augment"},
    ]


def test_the_quick_ladder_runs_every_rung(tmp_path):
    result = run_script("ladder.py", "--quick", "--no-torch", "--json", tmp_path / "l.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "l.json").read_text())
    assert [row["rung"] for row in rows] == list(range(len(rungs(2))))
    assert all(len(row["nn_gpu"]["accuracies"]) == 1 and 0.1 < row["nn_gpu"]["accuracies"][0] <= 1 for row in rows)
    assert (
        "| 7. affine and elastic distortions |" in result.stdout
        and "| 8. rung 5 with two hidden layers" in result.stdout
    )


def test_the_readmes_best_recipe_runs_unchanged_on_a_kaggle_csv(tmp_path, monkeypatch):
    train_csv = synthetic_csv(tmp_path / "train.csv", 1500, seed=6)  # more than the default dev set of 1,000
    block = (ROOT / "README.md").read_text().split("<!-- best-recipe -->\n```\n", 1)[1].split("\n```", 1)[0]
    words = shlex.split(block)
    assert words[:2] == ["python", "scripts/train.py"] and words[words.index("--data") + 1] == "sample"
    assert words[words.index("--data") + 2 :] == [*rungs(100)[17][1]]  # the recipe measured in docs/ladder.md
    words[words.index("--data") + 1] = str(train_csv)  # a Kaggle-format train.csv in its place
    monkeypatch.chdir(tmp_path)
    assert train_main([*words[2:], "--dry-run", "--device", "cpu", "--quiet"]) == 0
    assert next((tmp_path / "runs").iterdir()).joinpath("best_model.npz").exists()


def test_the_readmes_clothes_recipe_is_the_ladders_rung_16_and_runs(tmp_path, monkeypatch):
    block = (ROOT / "README.md").read_text().split("<!-- best-recipe-fashion -->\n```\n", 1)[1].split("\n```", 1)[0]
    words = shlex.split(block)
    assert words[:2] == ["python", "scripts/train.py"]
    data = words.index("--data")
    assert words[data + 1 : data + 4] == ["/usr/share/datasets/fashion-mnist", "--dev-size", "0"]
    assert words[data + 4 :] == [*rungs(50)[16][1]]  # the recipe measured in docs/ladder.md
    train_csv = synthetic_csv(tmp_path / "train.csv", 300, seed=6)
    words[data + 1] = str(train_csv)
    monkeypatch.chdir(tmp_path)
    assert train_main([*words[2:], "--dry-run", "--device", "cpu", "--quiet"]) == 0
    assert next((tmp_path / "runs").iterdir()).joinpath("model.npz").exists()
