"""One run on a machine with one large NVIDIA GPU: the tests on cuda, GPU benchmark rows, and the full-length
four-stage recipe cross-validated and trained on every pair, everything written into one folder.

    python Testing/gpu/gpu_run.py --data DATA_DIR --output OUT [--minutes 9]
    python Testing/gpu/gpu_run.py --smoke --output OUT      # the CPU rehearsal: phantom pairs, a few steps

DATA_DIR is a data folder (moving_images/, fixed_images/, moving_labels/, fixed_labels/); the GPU machine may not
have ../shared, so the data travels with the working tree in an ignored folder (DEVELOPERS.md). In OUT:

    environment.json   torch, the device, the recipe and what was asked
    tests.log          the test suite run with the device picked by "auto" (cuda there)
    benchmark.txt      registrations per second at the example size, training steps per second
    cv/                the cross-validation folder (labelreg crossval's layout: fold<k>/stage<s>/, metrics.csv,
                       per_case.csv, summary.json): the three folds train in parallel processes on the one GPU
    final/stage<s>/    the recipe trained on every pair, stage by stage (final/stage3/model.pt is the candidate)
    *.log              each process's output
    summary.txt        what ran, for how long, and the cross-validated table

Each part has its share of ``--minutes`` and is stopped when it runs over (its log says so); the trainings are
resumable (``--resume`` continues them in the same OUT).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "LabelReg"))

STAGES = [f"labelreg_localnet{suffix}.ini" for suffix in ("", "_stage2", "_stage3", "_stage4")]
FOLDS = 3
SMOKE = {"total_iterations": "2", "num_channel_initial": "4", "minibatch_size": "2", "freq_validation": "2",
         "freq_model_save": "2", "freq_info_print": "1", "swa_start": "1", "swa_every": "1", "phantom_pairs": "0", "validation_fraction": "0"}  # fmt: skip


def stages(data: str, smoke: bool) -> list:
    """The recipe's four stages on ``data`` (shortened to a few tiny steps with ``smoke``)."""
    from LabelRegLib.core.config import TrainConfig, config_from
    from LabelRegLib.nets.model_file import MODELS_DIR

    flags = {f.name: None for f in fields(TrainConfig)}
    flags.update(data_dir=data, device="auto", initial_model="", **(SMOKE if smoke else {}))
    return [config_from(MODELS_DIR / name, flags) for name in STAGES]


def crossvalidation(data: str, smoke: bool, output: Path):
    from LabelRegLib.evaluation.crossval import CrossValidation

    return CrossValidation(
        stages(data, smoke), FOLDS, output / "cv", resume=True, log=lambda line: print(line, flush=True)
    )


def train_final(data: str, smoke: bool, output: Path) -> None:
    """The recipe on every pair: each stage starts from the previous stage's model (resumable)."""
    from dataclasses import replace

    from LabelRegLib.training.trainer import Trainer

    for n, stage in enumerate(stages(data, smoke)):
        folder = output / "final" / f"stage{n}"
        if (folder / "model.pt").is_file():
            continue
        previous = str(output / "final" / f"stage{n - 1}" / "model.pt") if n else ""
        config = replace(
            stage, output_dir=str(folder), file_model_save=str(folder / "model.pt"), initial_model=previous
        )
        Trainer(config.validate()).run(resume=(folder / "checkpoint.pt").is_file())


def benchmark(data: str, output: Path) -> str:
    """Registrations per second at the example size (the first pair of ``data``; default pipeline, model loaded)
    and training steps per second (the recipe's first stage, its batch and grid)."""
    from LabelRegLib.data.cases import load_data_folder
    from LabelRegLib.registration.registrar import Registrar
    from LabelRegLib.training.trainer import Trainer

    case = load_data_folder(data)[0]
    registrar = Registrar(None, "auto")
    registrar.register(case.moving_image, case.fixed_image, warn=False)  # warm-up
    started, repeats = time.perf_counter(), 20
    for _ in range(repeats):
        registrar.register(case.moving_image, case.fixed_image, warn=False)
    per_second = repeats / (time.perf_counter() - started)
    from dataclasses import replace

    config = replace(stages(data, False)[0], total_iterations=30, output_dir=str(output / "benchmark_run"),
                     file_model_save=str(output / "benchmark_run" / "model.pt"), freq_validation=1000,
                     freq_model_save=1000)  # fmt: skip
    trainer = Trainer(config.validate())
    started = time.perf_counter()
    trainer.run()
    steps = 30 / (time.perf_counter() - started)
    return (
        f"| device | {registrar.device} |\n| registrations per second, example size ({case.name}, default pipeline) "
        f"| {per_second:.1f} |\n| training steps per second (stage 1 settings, 30 steps with setup) | {steps:.1f} |\n"
    )


def _child(task: str, args) -> list[str]:
    """This script again, running one ``task`` (a fold's training, the final model) in a process of its own."""
    command = [sys.executable, __file__, "--task", task, "--output", str(args.output), "--data", str(args.data)]
    return command + (["--smoke"] if args.smoke else [])


def _run_parallel(commands: dict, output: Path, seconds: float) -> dict:
    """Start every command at once (logs in ``output``); stop what runs past ``seconds``; their exit codes."""
    processes = {}
    for name, command in commands.items():
        log = open(output / f"{name}.log", "w")
        processes[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
    deadline, codes = time.monotonic() + seconds, {}
    for name, (process, log) in processes.items():
        try:
            codes[name] = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.terminate()
            codes[name] = f"stopped after {seconds:.0f} s (resumable)"
        log.close()
    return codes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="the data folder (not needed with --smoke)")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--minutes", type=float, default=9.0, help="the whole run's budget")
    parser.add_argument("--smoke", action="store_true", help="phantom data, a few tiny steps, no test suite")
    parser.add_argument("--task", help=argparse.SUPPRESS)  # internal: fold<k> or final
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    if args.task:
        if args.task == "final":
            train_final(args.data, args.smoke, args.output)
        else:
            crossvalidation(args.data, args.smoke, args.output).train_fold(int(args.task[len("fold") :]))
        return 0
    if args.smoke:
        from LabelRegLib.data.phantom import write_phantom_folder

        args.data = str(args.output / "phantoms")
        if not Path(args.data).is_dir():
            write_phantom_folder(args.data, n_pairs=6)
    if not args.data:
        parser.error("--data is required (a folder with moving_images/, fixed_images/, moving_labels/, fixed_labels/)")
    import torch

    started, budget_s, timings = time.monotonic(), args.minutes * 60, {}
    (args.output / "environment.json").write_text(json.dumps({
        "torch": torch.__version__, "cuda": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpus": os.cpu_count(), "data": args.data, "smoke": args.smoke, "stages": STAGES, "folds": FOLDS,
    }, indent=2))  # fmt: skip
    if not args.smoke:
        with open(args.output / "tests.log", "w") as log:
            tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", str(REPO / "Testing")], stdout=log,
                                   stderr=subprocess.STDOUT, timeout=0.15 * budget_s, cwd=REPO)  # fmt: skip
        timings["tests"] = f"exit {tests.returncode}"
        (args.output / "benchmark.txt").write_text(benchmark(args.data, args.output))
        timings["benchmark"] = "done"
    crossvalidation(args.data, args.smoke, args.output)  # the folds, decided once before the processes start
    left = budget_s - (time.monotonic() - started) - 60  # a minute kept for the held-out evaluation
    tasks = {f"fold{k}": _child(f"fold{k}", args) for k in range(FOLDS)} | {"final": _child("final", args)}
    timings.update(_run_parallel(tasks, args.output, left))
    summary = crossvalidation(args.data, args.smoke, args.output).run("auto")
    lines = [f"{name}: {outcome}" for name, outcome in timings.items()]
    lines.append(f"cross-validated (pooled, {summary['n_pairs']} held-out pairs): gland Dice "
                 f"{summary['gland_dice_before_median']:.3f} -> {summary['gland_dice_median']:.3f}, landmark TRE "
                 f"{summary['tre_mm_before_median']:.2f} -> {summary['tre_mm_median']:.2f} mm")  # fmt: skip
    lines.append(f"whole run: {time.monotonic() - started:.0f} s")
    (args.output / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
