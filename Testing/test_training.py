"""Training: it learns, it resumes exactly after SIGKILL, checkpoints are atomic, torchrun works."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import TINY_NETWORK, labelreg_command, subprocess_env, train_tiny_model
from LabelRegLib.nets.model_file import read_model_payload
from LabelRegLib.training.training_data import split_cases

pytestmark = pytest.mark.slow


def test_validation_dice_rises_while_training_on_phantoms(tmp_path):
    from LabelRegLib.data.phantom import write_phantom_folder

    # MR fields of view 8 mm off the gland: a misalignment shared by all pairs, which a few dozen steps can learn
    write_phantom_folder(tmp_path / "data", n_pairs=6, fov_offset_mm=(8.0, 0.0, 0.0))
    model = train_tiny_model(
        tmp_path / "data",
        tmp_path / "run",
        steps=40,
        learning_rate=1e-3,
        freq_validation=20,
        label_sampling="all",
        validation_fraction=0.34,
        norm="instance",
    )
    header, _ = read_model_payload(model)
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    validated = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    dices = [float(row["val_dice"]) for row in validated if row["val_dice"]]
    assert len(dices) >= 3  # step 0, 20, 40
    assert dices[-1] > dices[0] + 0.05, dices
    assert header["validation"]["val_dice"] == pytest.approx(dices[-1])
    assert header["training"]["steps"] == 40
    assert header["training_input_shape_kji"] == [46, 55, 50]  # the phantoms' US grid (no working spacing set)
    for name in ("checkpoint.pt", "metrics.csv", "curves.png", "config.ini", "model.pt"):
        assert (tmp_path / "run" / name).is_file()


def test_split_is_deterministic_and_disjoint():
    train, val = split_cases(90, 0.1, seed=0)
    assert len(val) == 9 and not set(train) & set(val) and sorted(train + val) == list(range(90))
    assert split_cases(90, 0.1, seed=0) == (train, val)
    assert split_cases(1, 0.5, seed=0) == ([0], [])


def _train_args(data, out, steps=12, save_every=3, *extra):
    return [
        "train",
        "--data_dir",
        data,
        "--output_dir",
        out,
        "--total_iterations",
        steps,
        "--freq_model_save",
        save_every,
        "--freq_validation",
        1000,
        "--freq_info_print",
        1,
        "--deterministic",
        "true",
        "--validation_fraction",
        0.2,
        "--progress-json",
        *TINY_NETWORK,
        *extra,
    ]


def _weights(path):
    return read_model_payload(path)[1]


def test_sigkill_then_resume_gives_the_same_weights_as_an_uninterrupted_run(phantom_folder, tmp_path):
    env = subprocess_env()
    # every random augmentation, both weight averages and a learning-rate step after the kill: their state must survive the kill too
    augmented = [
        "--translation_mm",
        5,
        "--flip_axes",
        "jk",
        "--intensity_gamma",
        0.3,
        "--ema_decay",
        0.9,
        "--segmentation_weight",
        0.5,
        "--learning_rate_milestones",
        "[9]",
        "--learning_rate_decay",
        0.5,
        "--swa_start",
        4,
        "--swa_every",
        3,
        "--fixed_translation_mm",
        3,
    ]
    full = subprocess.run(
        labelreg_command(*_train_args(phantom_folder, tmp_path / "full", 12, 3, *augmented)),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert full.returncode == 0, full.stderr

    process = subprocess.Popen(
        labelreg_command(*_train_args(phantom_folder, tmp_path / "killed", 12, 3, *augmented)),
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    killed_after = None
    for line in process.stdout:
        record = json.loads(line)
        if record["event"] == "checkpoint" and record["step"] >= 6:
            killed_after = record["step"]
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert killed_after is not None and process.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "model.pt").exists()

    resumed = subprocess.run(
        labelreg_command(*_train_args(phantom_folder, tmp_path / "killed", 12, 3, *augmented), "--resume"),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    start = json.loads(resumed.stdout.splitlines()[0])
    assert start["event"] == "start" and start["step"] >= killed_after
    reference, result = _weights(tmp_path / "full" / "model.pt"), _weights(tmp_path / "killed" / "model.pt")
    assert reference.keys() == result.keys()
    for name in reference:
        assert torch.equal(reference[name], result[name]), name


def test_a_checkpoint_half_written_at_kill_time_leaves_the_last_good_one(phantom_folder, tmp_path, monkeypatch):
    """Kill while the next checkpoint is being written: the previous one still loads and resumes."""
    from LabelRegLib.training import trainer as training

    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: write half of it, then "die"
            real_save(obj, path, *args, **kwargs)
            with open(path, "r+b") as handle:
                handle.truncate(os.path.getsize(path) // 2)
            raise KeyboardInterrupt("killed while writing")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(training.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train_tiny_model(phantom_folder, tmp_path / "run", steps=6, freq_model_save=2)
    monkeypatch.setattr(training.torch, "save", real_save)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    assert torch.load(checkpoint, weights_only=True)["step"] == 2
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")] == []
    model = train_tiny_model(phantom_folder, tmp_path / "run", steps=6, freq_model_save=2, resume=True)
    assert read_model_payload(model)[0]["training"]["steps"] == 6


def test_sigkill_at_random_moments_never_corrupts_the_checkpoint(phantom_folder, tmp_path):
    env = subprocess_env()
    for attempt, delay in enumerate([0.05, 0.3, 0.7]):
        process = subprocess.Popen(
            labelreg_command(*_train_args(phantom_folder, tmp_path / "run", steps=200, save_every=1)),
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for line in process.stdout:
            if json.loads(line)["event"] == "checkpoint":
                break
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
        assert state["step"] >= 1


def test_two_process_torchrun_gloo_training_splits_samples_and_only_rank0_writes(phantom_folder, tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "LabelRegLib.cli",
        *map(str, _train_args(phantom_folder, out, steps=4, save_every=2)),
        "--device",
        "cpu",
    ]
    run = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    reports = {}
    for line in run.stderr.splitlines():
        if line.startswith('{"event": "samples"'):
            record = json.loads(line)
            reports[record["rank"]] = record
    assert sorted(reports) == [0, 1]
    per_step = 2  # minibatch per rank
    for step in range(4):
        mine = reports[0]["cases"][step * per_step : (step + 1) * per_step]
        theirs = reports[1]["cases"][step * per_step : (step + 1) * per_step]
        assert len(mine) == len(theirs) == per_step and not set(mine) & set(theirs), (step, mine, theirs)
    assert reports[1]["wrote"] == []
    assert str(out / "model.pt") in reports[0]["wrote"]
    start = json.loads(run.stdout.splitlines()[0])
    assert start["world_size"] == 2
    assert read_model_payload(out / "model.pt")[0]["training"]["steps"] == 4


def test_the_trainer_reads_in_one_sitting():
    """Issue 15's limits: the trainer's files at most 250 lines, no class over 200, no method over 60, and every
    attribute of Trainer set in __init__ (so validate() works before run())."""
    import ast

    from helpers import REPO

    library = REPO / "LabelReg" / "LabelRegLib"
    names = (
        "training/trainer training/training_data data/augmentation training/weight_averages training/checkpoint "
        "training/progress training/model_header training/distributed training/validation"
    )
    for name in names.split():
        source = (library / f"{name}.py").read_text()
        assert len(source.splitlines()) <= 250, f"{name}.py"
        for node in ast.walk(ast.parse(source)):
            size = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            assert not isinstance(node, ast.ClassDef) or size <= 200, f"{name}.py: class {node.name}"
            assert not isinstance(node, ast.FunctionDef) or size <= 60, f"{name}.py: {node.name}"
    trainer = next(
        n
        for n in ast.parse((library / "training" / "trainer.py").read_text()).body
        if getattr(n, "name", "") == "Trainer"
    )
    methods = {m.name: m for m in trainer.body if isinstance(m, ast.FunctionDef)}
    initialised = ast.unparse(methods.pop("__init__"))
    for name, method in methods.items():
        for node in ast.walk(method):
            for target in node.targets if isinstance(node, ast.Assign) else []:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Attribute) and getattr(leaf.value, "id", "") == "self":
                        assert f"self.{leaf.attr}" in initialised, f"Trainer.{name} sets self.{leaf.attr} first"
