"""Batch registration with LabelReg's Slicer logic, headless.

In Slicer::

    Slicer --no-main-window --python-script labelreg_batch.py -- \\
        --moving mr.nii.gz --fixed us.nii.gz --output-transform mr_to_us.h5 \\
        [--segmentation mr.seg.nrrd --output-segmentation on_us.seg.nrrd] [--output-labelmap on_us_labels.nrrd] \\
        [--moving-points targets.mrk.json --points-on-fixed targets_on_us.mrk.json]
        [--model model.pt] [--device auto] [--init centers]
    Slicer --no-main-window --python-script labelreg_batch.py -- --cases cases.csv

``cases.csv`` has the columns ``moving, fixed, output_transform`` and
optionally ``segmentation, output_segmentation, output_labelmap, moving_points,
points_on_fixed`` (MR targets mapped onto the US, as ``labelreg map-points --to us``).

The same script runs under plain Python with the ``slicer-core`` wheel (from a
LabelReg checkout): ``LabelRegLib.slicer.standalone`` stands in for
the Slicer application. Files are read and written by Slicer's own storage
nodes; the registration is ``LabelRegLogic.register``, the method the Register
button calls.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODULE_DIR = HERE.parents[1]  # LabelReg/


def _slicer():
    """The slicer package, with LabelReg's stand-ins for the application when there is no Slicer application."""
    import slicer

    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    if not hasattr(slicer, "app"):
        from LabelRegLib.slicer import standalone as slicer_standalone

        slicer_standalone.install()
    return slicer


def _read(slicer, node_class: str, storage_class: str, path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
    node = slicer.mrmlScene.AddNewNodeByClass(node_class, Path(path).name.split(".")[0])
    storage = slicer.mrmlScene.AddNewNodeByClass(storage_class)
    storage.SetFileName(path)
    if not storage.ReadData(node):
        slicer.mrmlScene.RemoveNode(node)
        raise OSError(f"{path}: cannot be read by {storage_class}")
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


def _write(slicer, node, storage_class: str, path: str, verify) -> None:
    """Write with Slicer's storage node to a temporary file, check it with ``verify(temporary)`` (ITK's writers
    report a full disk only on the console), then rename it into place (``LabelRegLib.core.writes.atomic_output``)."""
    from LabelRegLib.core.writes import atomic_output

    storage = slicer.mrmlScene.AddNewNodeByClass(storage_class)
    try:
        with atomic_output(path, verify) as temporary:
            storage.SetFileName(str(temporary))
            if not storage.WriteData(node):
                raise OSError(f"{storage_class} failed")
    finally:
        slicer.mrmlScene.RemoveNode(storage)


def _write_transform(slicer, node, path: str) -> None:
    from LabelRegLib.core.transform_io import read_displacement
    from LabelRegLib.core.writes import ShortWrite, check_room
    from LabelRegLib.slicer.mrml import grid_transform_displacement

    field = grid_transform_displacement(node)

    def verify(temporary):
        written = read_displacement(temporary)
        if not (written.same_geometry(field) and np.allclose(written.array, field.array, atol=1e-4)):
            raise ShortWrite("what was read back differs from what was written")

    check_room(path, field.array.size * 8)  # ITK's HDF5 crashes the process at exit after a failed write
    _write(slicer, node, "vtkMRMLTransformStorageNode", path, verify)


def _write_labelmap(slicer, node, path: str) -> None:
    from LabelRegLib.core.io import verify_volume

    voxels = slicer.util.arrayFromVolume(node).copy()
    _write(slicer, node, "vtkMRMLVolumeArchetypeStorageNode", path, lambda temporary: verify_volume(temporary, voxels))


def _write_segmentation(slicer, node, path: str) -> None:
    from LabelRegLib.core.io import read_labels
    from LabelRegLib.core.writes import ShortWrite

    count = node.GetSegmentation().GetNumberOfSegments()

    def verify(temporary):
        if len(read_labels(temporary)) != count:
            raise ShortWrite(f"the file read back does not hold the {count} segment(s) written")

    _write(slicer, node, "vtkMRMLSegmentationStorageNode", path, verify)


def register_case(logic, slicer, case: dict, options: dict) -> None:
    moving = _read(slicer, "vtkMRMLScalarVolumeNode", "vtkMRMLVolumeArchetypeStorageNode", case["moving"])
    fixed = _read(slicer, "vtkMRMLScalarVolumeNode", "vtkMRMLVolumeArchetypeStorageNode", case["fixed"])
    segmentation = None
    if case.get("segmentation"):
        segmentation = _read(slicer, "vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode", case["segmentation"])
    transform = logic.register(
        moving,
        fixed,
        segmentationNode=segmentation,
        segmentationMode="harden" if case.get("output_segmentation") else "transform",
        createLabelmap=bool(case.get("output_labelmap")),
        **options,
    )
    if case.get("output_transform"):
        _write_transform(slicer, transform, case["output_transform"])
    if case.get("output_segmentation"):
        _write_segmentation(slicer, logic.lastCarriedSegmentationNode, case["output_segmentation"])
    if case.get("output_labelmap"):
        _write_labelmap(slicer, logic.lastLabelmapNode, case["output_labelmap"])
    if case.get("moving_points"):  # the MR has no parent here: the transform maps US world to MR world
        from LabelRegLib.registration.point_mapping import map_point_file
        from LabelRegLib.slicer.mrml import grid_transform_displacement

        map_point_file(grid_transform_displacement(transform), case["moving_points"], case["points_on_fixed"])
    print(f"{case['moving']} -> {case['fixed']}: {logic.lastStatus}", flush=True)
    slicer.mrmlScene.Clear(0)


NEEDS = {"output_segmentation": "segmentation", "output_labelmap": "segmentation", "points_on_fixed": "moving_points"}


def _cases(args, parser) -> list:
    """The cases to register, checked as the command line checks them before any work: every output against every
    input, every other output and the disk; something to write in every case; every image read and checked (3D,
    grey-scale, finite: Slicer's reader would load a NaN as 0)."""
    from LabelRegLib.core.errors import InputError
    from LabelRegLib.core.io import read_volume
    from LabelRegLib.core.outputs import check_rows
    from LabelRegLib.core.pairs_csv import BATCH_COLUMNS, columns_of, read_pairs

    single = [f"--{column.replace('_', '-')}" for column in BATCH_COLUMNS if getattr(args, column)]
    if args.cases and single:
        parser.error(f"--cases {args.cases}: names the files of every case; give {single[0]} as a column of it instead")
    if args.cases:
        rows = read_pairs(args.cases, BATCH_COLUMNS)
    elif args.moving and args.fixed:
        rows = [(0, {column: getattr(args, column) for column in BATCH_COLUMNS})]
    else:
        parser.error("give --moving and --fixed, or --cases")
    inputs, outputs = columns_of(BATCH_COLUMNS)
    check_rows(rows, inputs, outputs, args.overwrite, args.cases, args.model)
    for n, case in rows:
        where = f"{args.cases}: row {n}: " if args.cases else ""
        if not any(case.get(column) for column in outputs):
            raise InputError(
                None, f"{where}{case['moving']}: nothing to write; give {', '.join(o for o, _ in outputs.values())}"
            )
        for wanted, given in NEEDS.items():
            if case.get(wanted) and not case.get(given):
                raise InputError(None, f"{where}{outputs[wanted][0]} needs {inputs[given]}")
        if case.get("moving_points") and not case.get("points_on_fixed"):
            raise InputError(None, f"{where}--moving-points and --points-on-fixed go together")
        for image in (case["moving"], case["fixed"]):
            try:
                read_volume(image)
            except InputError as error:
                raise InputError(None, f"{where}{error}") from None
    return [case for _n, case in rows]


def _check_engine(args) -> None:
    """The model (a registration model, not a gland model) and the device, before any case runs."""
    from LabelRegLib.core.config import NETWORK_TYPES
    from LabelRegLib.core.device import select_device
    from LabelRegLib.core.errors import ModelFileError
    from LabelRegLib.nets.model_file import default_model_path, read_model_header

    path = args.model or default_model_path()
    kind = read_model_header(path)["architecture"].get("network_type")
    if kind not in NETWORK_TYPES:
        raise ModelFileError(path, f"is a {kind!r} model (gland segmentation), not a registration model")
    select_device(args.device)


def _ensure_dependencies(logic, parser) -> None:
    """torch and nibabel installed (in Slicer, through the PyTorch extension and pip, without asking: nobody is
    there to answer); where that is not possible, one line says how, before any case runs."""
    missing = logic.missingDependencies()
    if not missing:
        return
    try:
        if logic.ensureDependencies(askUser=False) and not logic.missingDependencies():
            return
        reason = "the install did not make them importable"
    except Exception as error:  # no PyTorch extension, no pip: say what to do instead
        reason = str(error).splitlines()[0]
    parser.error(
        f"{', '.join(missing)} not installed and not installable here ({reason}); open the LabelReg module in "
        "Slicer once and click Register (it offers to install them), or pip install torch nibabel in this Python"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="labelreg_batch.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--moving")
    parser.add_argument("--fixed")
    parser.add_argument("--output-transform")
    parser.add_argument("--segmentation", help="MR segmentation (.seg.nrrd) to carry onto the US")
    parser.add_argument("--output-segmentation", help="the segmentation hardened onto the US (.seg.nrrd)")
    parser.add_argument("--output-labelmap", help="the segments as a labelmap on the US grid (.nrrd / .nii.gz)")
    parser.add_argument("--moving-points", help="MR targets (.csv or .mrk.json) to map onto the US")
    parser.add_argument("--points-on-fixed", help="the targets on the US (the same form as --moving-points)")
    parser.add_argument(
        "--cases",
        help="CSV: moving, fixed, output_transform[, segmentation, output_segmentation, output_labelmap, "
        "moving_points, points_on_fixed]",
    )
    parser.add_argument("--model")
    parser.add_argument("--device", default="auto")
    # config.REGISTRATION_ALIGNMENTS, listed here: LabelRegLib is not importable yet (a test keeps both equal)
    parser.add_argument("--init", choices=["auto", "centers", "physical", "glands", "best"])
    parser.add_argument("--overwrite", action="store_true", help="replace output files that exist (never an input)")
    args = parser.parse_args(argv)

    slicer = _slicer()
    from LabelRegLib.core.errors import LabelRegError

    import LabelReg

    _ensure_dependencies(LabelReg.LabelRegLogic, parser)
    try:
        _check_engine(args)
        cases = _cases(args, parser)
    except LabelRegError as error:
        print(f"labelreg_batch.py: error: {error}", file=sys.stderr, flush=True)
        return 2
    logic = LabelReg.LabelRegLogic(inProcess=True)  # a headless job registers in its own process: no worker
    options = {"modelPath": args.model, "device": args.device, "initialAlignment": args.init}
    failures = 0
    for case in cases:
        try:
            register_case(logic, slicer, case, options)
        except Exception as error:  # report every case, then fail at the end (as labelreg register --pairs)
            failures += 1
            print(f"labelreg_batch.py: error: {case.get('moving')}: {error}", file=sys.stderr, flush=True)
            slicer.mrmlScene.Clear(0)
    if failures and len(cases) > 1:
        print(f"labelreg_batch.py: {failures} of {len(cases)} cases failed", file=sys.stderr, flush=True)
    return (2 if len(cases) == 1 else 1) if failures else 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends the run as Ctrl-C does: the output being written is removed


def run(argv) -> int:
    """:func:`main` as the command line runs a command: its status, SIGTERM and Ctrl-C one line and 130, the
    output claims released."""
    import signal

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return main(argv)
    except SystemExit as error:  # argparse's refusals (2), and --help (0)
        return error.code if isinstance(error.code, int) else 2
    except KeyboardInterrupt:
        print("labelreg_batch.py: interrupted", file=sys.stderr, flush=True)
        return 130
    finally:
        if "LabelRegLib.core.outputs" in sys.modules:
            sys.modules["LabelRegLib.core.outputs"].release_claims()


if __name__ == "__main__":
    exitCode = run(sys.argv[1:])
    slicer = sys.modules.get("slicer")  # not imported when the arguments were refused outside Slicer
    if hasattr(getattr(slicer, "app", None), "exit"):  # inside the Slicer application: leave with the status
        slicer.app.exit(exitCode)
    sys.exit(exitCode)
