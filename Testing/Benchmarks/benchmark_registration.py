"""Speed, memory and accuracy of the bundled model, printed as tables (measured in one run).

    python Testing/Benchmarks/benchmark_registration.py [--model M] [--data ../shared/data/mrus-prostate]
        [--repeats 10] [--skip-monai] [--skip-live] [--skip-classical]

1. Registration time per pair with the model loaded (median of --repeats), at the
   example data's size and at a clinical size (US 81x118x88 at 0.8 mm, MR
   120x128x128 at 0.8 mm), model-load time, and peak memory (max RSS); then the
   time of each stage (gland segmentation, alignment, resampling, network,
   composition, quality score) at the example size, with the default initial
   alignment (best for the bundled model: the network from two starts), and each
   start alone; the network's time includes test-time mirroring where it is on.
2. The network's forward time against MONAI's LocalNet of equal width and levels on
   the same input (MONAI is installed for this benchmark only: pip install monai).
3. The LabelReg module's logic (on slicer-core's MRML) registering through its
   worker process: Register's first call (starting the worker, loading the model)
   and later calls, against the engine in this process; then live mode, a flood of
   US frames at the example size, one every --frame-interval seconds (faster than a
   registration), with the main thread holding the GIL between 20 ms timer ticks as
   Slicer's does, and with it released: the latency from a frame to its transform,
   the main thread's time per registered frame (copying frames, updating MRML),
   frames registered, dropped for a newer one, and registered twice (must be 0).
4. On the model's validation pairs (from its header): LabelReg against a classical
   SimpleITK registration a Slicer user would pick today (rigid, then B-spline, Mattes
   mutual information, multi-resolution, from the centres-aligned start): gland Dice,
   landmark TRE and time per pair.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "LabelReg"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_pair(fixed_shape_ijk, fixed_spacing, moving_shape_ijk, moving_spacing, seed=0):
    from LabelRegLib.core.volume import Volume, make_ijk_to_ras

    rng = np.random.default_rng(seed)
    fixed = Volume(
        rng.random(fixed_shape_ijk[::-1], dtype=np.float32) * 255, make_ijk_to_ras([fixed_spacing] * 3), "us"
    )
    moving = Volume(
        rng.random(moving_shape_ijk[::-1], dtype=np.float32) * 255, make_ijk_to_ras([moving_spacing] * 3), "mr"
    )
    return moving, fixed


def time_registration(registrar, moving, fixed, repeats: int) -> float:
    registrar.register(moving, fixed)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        registrar.register(moving, fixed)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def speed_table(model, data, repeats):
    from LabelRegLib.registration.registrar import Registrar

    started = time.perf_counter()
    registrar = Registrar(model, "auto")
    load_s = time.perf_counter() - started
    rows = [("model load", f"{load_s:.3f} s", "", f"{peak_rss_mb():.0f} MB")]
    example, label = example_pair(data)
    rows.append(
        (
            label,
            f"{time_registration(registrar, *example, repeats):.3f} s",
            f"median of {repeats}",
            f"{peak_rss_mb():.0f} MB",
        )
    )
    clinical = synthetic_pair((81, 118, 88), 0.8, (120, 128, 128), 0.8)
    rows.append(
        (
            "clinical size (US 81x118x88, MR 120x128x128, 0.8 mm)",
            f"{time_registration(registrar, *clinical, repeats):.3f} s",
            f"median of {repeats}",
            f"{peak_rss_mb():.0f} MB",
        )
    )
    print_table(
        f"Registration time per pair, model loaded, device {registrar.device}", ["case", "time", "", "peak RSS"], rows
    )
    return registrar


def stage_table(registrar, data, repeats):
    """Seconds per stage of one registration at the example size (medians of ``repeats``), with the default
    initial alignment and with each start alone."""
    example, label = example_pair(data)
    columns = ["segmentation", "alignment", "resampling", "network", "composition", "quality"]
    rows = []
    default, own = registrar.default_alignment(), registrar.header.get("initial_alignment", "centers")
    starts = [own, "glands"] if registrar.glands is not None else [own]
    alignments = list(dict.fromkeys([default, *starts]))  # the default first, then each start alone, once each
    for alignment in alignments:
        registrar.register(*example, alignment, warn=False)  # warm-up
        results = [registrar.register(*example, alignment, warn=False) for _ in range(repeats)]
        name = f"{alignment} (default)" if alignment == default else alignment
        for stage in columns:
            values = [r.stage_s[stage] for r in results if stage in r.stage_s]
            if values:
                rows.append((f"{name}: {stage}", f"{1000 * statistics.median(values):.0f} ms"))
        rows.append((f"{name}: total", f"{1000 * statistics.median(r.runtime_s for r in results):.0f} ms"))
    print_table(
        f"Time per stage, {label}, model loaded, device {registrar.device} (median of {repeats})",
        ["stage", "time"],
        rows,
    )
    if registrar.mirror_axes:
        print(f"(network: the pair and its copy mirrored along {registrar.mirror_axes}, as one batch)")


def monai_table(registrar, repeats):
    import torch

    try:
        from monai.networks.nets import LocalNet as MonaiLocalNet
    except ImportError:
        print("\nMONAI is not installed (pip install monai): comparison skipped.")
        return
    architecture = registrar.header["architecture"]
    ours = registrar.network
    theirs = MonaiLocalNet(
        spatial_dims=3,
        in_channels=2,
        out_channels=3,
        num_channel_initial=architecture["num_channel_initial"],
        extract_levels=tuple(architecture["ddf_levels"]),
        out_activation=None,
    ).eval()
    rows = []
    for shape in ((48, 64, 48), (32, 48, 32)):
        moving = torch.rand(1, 1, *shape)
        fixed = torch.rand(1, 1, *shape)
        with torch.no_grad():
            t_ours = _median_time(
                lambda: ours(
                    moving.contiguous(memory_format=torch.channels_last_3d),
                    fixed.contiguous(memory_format=torch.channels_last_3d),
                ),
                repeats,
            )
            t_monai = _median_time(lambda: theirs(torch.cat([moving, fixed], 1)), repeats)
        rows.append(
            (
                f"{shape[2]}x{shape[1]}x{shape[0]} voxels",
                f"{t_ours * 1000:.0f} ms",
                f"{t_monai * 1000:.0f} ms",
                f"{t_ours / t_monai:.2f}",
            )
        )
    params_ours = sum(p.numel() for p in ours.parameters())
    params_monai = sum(p.numel() for p in theirs.parameters())
    print_table(
        f"Forward pass, LabelReg LocalNet ({params_ours:,} parameters) vs MONAI LocalNet ({params_monai:,}), "
        f"{architecture['num_channel_initial']} channels, levels {architecture['ddf_levels']}",
        ["input", "LabelReg", "MONAI", "ratio (LabelReg / MONAI)"],
        rows,
    )


def _median_time(function, repeats):
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def classical_registration(moving, fixed):
    """SimpleITK: centres-aligned start, rigid then B-spline, Mattes MI, 3 levels. Returns the sitk transform."""
    import SimpleITK as sitk
    from LabelRegLib.core.sitk_geometry import to_sitk_image

    fixed_image = sitk.Cast(to_sitk_image(fixed.array, fixed.ijk_to_ras), sitk.sitkFloat32)
    moving_image = sitk.Cast(to_sitk_image(moving.array, moving.ijk_to_ras), sitk.sitkFloat32)
    initial = sitk.CenteredTransformInitializer(
        fixed_image, moving_image, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )

    def method():
        registration = sitk.ImageRegistrationMethod()
        registration.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        registration.SetMetricSamplingStrategy(registration.RANDOM)
        registration.SetMetricSamplingPercentage(0.2, seed=0)
        registration.SetInterpolator(sitk.sitkLinear)
        registration.SetShrinkFactorsPerLevel([4, 2, 1])
        registration.SetSmoothingSigmasPerLevel([2, 1, 0])
        registration.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        return registration

    rigid = method()
    rigid.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=100)
    rigid.SetOptimizerScalesFromPhysicalShift()
    rigid.SetInitialTransform(initial, inPlace=False)
    rigid_transform = rigid.Execute(fixed_image, moving_image)

    bspline = method()
    mesh = sitk.BSplineTransformInitializer(fixed_image, [4, 4, 4])
    bspline.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=50)
    bspline.SetMovingInitialTransform(rigid_transform)
    bspline.SetInitialTransform(mesh, inPlace=True)
    bspline.Execute(fixed_image, moving_image)
    return sitk.CompositeTransform([rigid_transform, mesh])


def accuracy_table(registrar, data, max_pairs):
    import SimpleITK as sitk
    from LabelRegLib.core.metrics import dice, tre_mm
    from LabelRegLib.core.sitk_geometry import from_sitk_image, to_sitk_image
    from LabelRegLib.data.cases import load_case
    from LabelRegLib.evaluation.evaluate import evaluate_case

    names = registrar.header.get("training", {}).get("validation_cases", [])[:max_pairs]
    if not names or not data:
        print("\nNo validation cases in the model header or no data folder: accuracy comparison skipped.")
        return
    rows, summary = [], {"labelreg": [], "classical": []}
    for name in names:
        case = load_case(
            *(
                data / sub / f"{name}.nii.gz"
                for sub in ("moving_images", "fixed_images", "moving_labels", "fixed_labels")
            ),
            name=name,
        )
        ours = evaluate_case(registrar, case)
        started = time.perf_counter()
        try:
            transform = classical_registration(case.moving_image, case.fixed_image)
            classical_s = time.perf_counter() - started
            reference = to_sitk_image(case.fixed_image.array, case.fixed_image.ijk_to_ras)
            warped = [
                from_sitk_image(
                    sitk.Resample(
                        to_sitk_image(label.array, label.ijk_to_ras), reference, transform, sitk.sitkLinear, 0.0
                    )
                )
                for label in case.moving_labels
            ]
            classical_dice = dice(warped[0].array, case.fixed_labels[0].array)
            classical_tre = float(np.nanmedian([tre_mm(w, f) for w, f in zip(warped[1:], case.fixed_labels[1:])]))
        except RuntimeError as error:  # the optimiser can fail on these pairs; count it as a failure
            classical_s, classical_dice, classical_tre = time.perf_counter() - started, float("nan"), float("nan")
            print(f"classical registration of {name} failed: {str(error).splitlines()[-1]}")
        gland = ours.rows[0]
        # nan: a warped landmark left the US field of view (its label is empty there)
        our_tre = float(np.nanmedian([r["tre_mm_after"] for r in ours.rows[1:]]))
        before_tre = float(np.nanmedian([r["tre_mm_before"] for r in ours.rows[1:]]))
        summary["labelreg"].append((gland["dice_after"], our_tre, gland["runtime_s"]))
        summary["classical"].append((classical_dice, classical_tre, classical_s))
        rows.append(
            (
                name,
                f"{gland['dice_before']:.3f} / {before_tre:.1f}",
                f"{gland['dice_after']:.3f} / {our_tre:.1f} / {gland['runtime_s']:.2f} s",
                f"{classical_dice:.3f} / {classical_tre:.1f} / {classical_s:.1f} s",
            )
        )
    for method in ("labelreg", "classical"):
        values = np.array(summary[method])
        summary[method] = [float(np.nanmedian(values[:, i])) for i in range(3)]
    rows.append(
        (
            "median",
            "",
            "{:.3f} / {:.1f} / {:.2f} s".format(*summary["labelreg"]),
            "{:.3f} / {:.1f} / {:.1f} s".format(*summary["classical"]),
        )
    )
    print_table(
        f"Validation pairs: gland Dice / landmark TRE mm, median over the pair's landmarks (/ time), {len(names)} pairs; "
        "nan: every warped landmark left the US field of view",
        ["case", "centres aligned", "LabelReg", "SimpleITK rigid+B-spline (Mattes MI)"],
        rows,
    )


def print_table(title, header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print(f"\n{title}")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")


def example_pair(data):
    """The example pair obs000 from the data folder, or a synthetic pair of its size; and its label."""
    from LabelRegLib.core.io import read_volume

    if data and (data / "fixed_images" / "obs000.nii.gz").is_file():
        pair = (
            read_volume(data / "moving_images" / "obs000.nii.gz"),
            read_volume(data / "fixed_images" / "obs000.nii.gz"),
        )
        return pair, "example pair obs000 (US 47x63x44, MR 69x69x64, 1.5 mm)"
    return synthetic_pair(
        (47, 63, 44), 1.5, (69, 69, 64), 1.5
    ), "example size, synthetic (US 47x63x44, MR 69x69x64, 1.5 mm)"


def live_table(model, data, frames: int, interval_s: float, repeats: int):
    """The LabelReg logic on slicer-core's MRML, registering through its worker process."""
    from LabelRegLib.registration.registrar import Registrar
    from LabelRegLib.slicer import standalone as slicer_standalone

    slicer = slicer_standalone.install()
    from LabelRegLib.slicer.mrml import update_volume_node

    import LabelReg

    (moving, fixed), label = example_pair(data)
    movingNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MR")
    fixedNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "US")
    update_volume_node(movingNode, moving)
    update_volume_node(fixedNode, fixed)
    logic = LabelReg.LabelRegLogic()
    started = time.perf_counter()
    transform = logic.register(movingNode, fixedNode, modelPath=model)
    first, first_status = time.perf_counter() - started, logic.lastStatus.split("\n")[0]
    later = []
    for _ in range(repeats):
        started = time.perf_counter()
        logic.register(movingNode, fixedNode, transform, modelPath=model)
        later.append(time.perf_counter() - started)
    time_registration(Registrar(model, "auto"), moving, fixed, 1)  # warm-up
    in_process = time_registration(Registrar(model, "auto"), moving, fixed, repeats)
    rows = [
        ("Register, first (starts the worker, loads the model)", f"{first:.3f} s", first_status),
        ("Register, later (network + transfer + MRML)", f"{statistics.median(later):.3f} s", f"median of {repeats}"),
        ("the engine in this process, same pair", f"{in_process:.3f} s", "Registrar.register, median"),
    ]
    for hold, regime in ((True, "GIL held between ticks, as in Slicer"), (False, "GIL released between ticks")):
        stats, elapsed = _live_flood(slicer, logic, (movingNode, fixedNode, transform), fixed, model, frames,
                                     interval_s, hold)  # fmt: skip
        rows += [
            (
                f"live latency, frame to transform ({regime})",
                f"median {statistics.median(stats['latency_s']):.3f} s",
                f"max {max(stats['latency_s']):.3f} s",
            ),
            (
                "  main thread per registered frame (copies + MRML update)",
                f"median {statistics.median(stats['main_thread_s']) * 1000:.1f} ms",
                f"max {max(stats['main_thread_s']) * 1000:.1f} ms",
            ),
            (
                "  frames sent / registered / dropped / twice",
                f"{stats['frames']} / {stats['processed']} / {stats['dropped']} / "
                f"{stats['frames'] - stats['processed'] - stats['dropped']}",
                f"one every {interval_s * 1000:.0f} ms for {elapsed:.1f} s",
            ),
        ]
    logic.engine().stop()
    print_table(f"Slicer logic through the registration worker, {label}", ["", "value", ""], rows)


def _live_flood(slicer, logic, nodes, fixed, model, frames, interval_s, hold_gil):
    """A US frame every ``interval_s`` while the main thread runs Slicer's 20 ms timer ticks (holding the GIL
    between them with ``hold_gil``, as Slicer does); returns the live statistics and the seconds it took."""
    from LabelRegLib.slicer.standalone import run_event_loop

    movingNode, fixedNode, transform = nodes
    logic.startLiveUpdate(movingNode, fixedNode, transform, modelPath=model)
    sent, next_frame = [0], [time.perf_counter()]

    def tick():
        if sent[0] < frames and time.perf_counter() >= next_frame[0]:
            sent[0] += 1
            slicer.util.updateVolumeFromArray(fixedNode, np.roll(fixed.array, 1 + sent[0] % 5, axis=2))
            next_frame[0] += interval_s
        logic.processLiveResults()

    elapsed = run_event_loop(tick, lambda: sent[0] == frames and logic._live.idle, hold_gil=hold_gil)
    logic.stopLiveUpdate()
    return logic.liveStatistics, elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file (default: the bundled model)")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mrus-prostate"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--max-pairs", type=int, default=9)
    parser.add_argument("--skip-monai", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--frames", type=int, default=40, help="live mode: US frames sent")
    parser.add_argument("--frame-interval", type=float, default=0.05, help="live mode: seconds between two frames")
    parser.add_argument("--skip-classical", action="store_true")
    args = parser.parse_args()
    data = Path(args.data) if Path(args.data).is_dir() else None
    registrar = speed_table(args.model, data, args.repeats)
    stage_table(registrar, data, args.repeats)
    if not args.skip_monai:
        monai_table(registrar, args.repeats)
    if not args.skip_live:
        live_table(args.model, data, args.frames, args.frame_interval, args.repeats)
    if not args.skip_classical:
        accuracy_table(registrar, data, args.max_pairs)


if __name__ == "__main__":
    main()
