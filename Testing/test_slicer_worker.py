"""Registration out of Slicer's process (issue 24, 1): the worker, and live mode under Slicer's GIL regime.

Slicer's main thread holds Python's GIL while it waits in the Qt event loop; a Python thread in Slicer's
process then runs only when the main thread runs Python. ``slicer_standalone.run_event_loop`` reproduces
that regime (the GIL held between 20 ms ticks), so these tests see what a real Slicer would.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from helpers import REPO, subprocess_env
from LabelRegLib.data.phantom import make_phantom_pair

slicer_standalone = pytest.importorskip("LabelRegLib.slicer.standalone")
posix_only = pytest.mark.skipif(os.name == "nt", reason="the GIL simulation calls the C library's usleep")


def _phantom(slicer, seed=1003):
    from LabelRegLib.slicer.mrml import add_phantom_nodes

    pair = make_phantom_pair(seed)
    moving, fixed, _segmentation = add_phantom_nodes(slicer.mrmlScene, pair)
    return pair, moving, fixed


def _kill(pid: int) -> None:
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/PID", str(pid)], capture_output=True)
    else:
        os.kill(pid, signal.SIGKILL)


def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@posix_only
def test_live_mode_keeps_its_speed_while_slicer_holds_the_gil(slicer, scene, LabelReg, monkeypatch):
    """Frame-to-transform latency with the GIL held between ticks, as in Slicer, against the same run with the
    GIL released: within 3x (the worker thread of the old live mode was 75x slower), and the network never
    runs in this process, in any thread."""
    import LabelRegLib.registration.registrar

    ran_here = []
    monkeypatch.setattr(
        LabelRegLib.registration.registrar.Registrar,
        "register",
        lambda *a, **k: ran_here.append(threading.current_thread()),
    )
    pair, moving, fixed = _phantom(slicer)
    logic = LabelReg.LabelRegLogic()
    transform = logic.register(moving, fixed)
    threads = threading.active_count()
    logic.startLiveUpdate(moving, fixed, transform)
    latencies = {True: [], False: []}
    try:
        for shift in range(1, 9):  # the two regimes alternate, four frames each
            hold = shift % 2 == 0
            done = logic.liveStatistics["processed"] + 1
            slicer.util.updateVolumeFromArray(fixed, np.roll(pair.fixed_image.array, shift, axis=2))
            slicer_standalone.run_event_loop(
                logic.processLiveResults, lambda: logic.liveStatistics["processed"] >= done, hold_gil=hold
            )
            latencies[hold].append(logic.liveStatistics["latency_s"][-1])
        assert threading.active_count() == threads, "live mode started a thread in Slicer's process"
    finally:
        logic.stopLiveUpdate()
    held, released = np.median(latencies[True]), np.median(latencies[False])
    # a behaviour bound, not a speed measurement (benchmark_registration.py measures the ratio: about 1.0): the
    # thread of the old live mode was 75x slower; 3x leaves room for a machine loaded by other processes
    assert held <= 3 * released, f"latency {held:.3f} s with the GIL held, {released:.3f} s released"
    assert ran_here == [], "the network ran in Slicer's process"
    assert max(logic.liveStatistics["main_thread_s"]) < 0.5  # copying a frame and updating MRML only


def test_a_killed_worker_is_one_line_and_the_next_register_works(slicer, scene, LabelReg):
    from LabelRegLib.registration.worker_client import WorkerError

    pair, moving, fixed = _phantom(slicer)
    logic = LabelReg.LabelRegLogic()
    transform = logic.register(moving, fixed)
    worker = logic.engine()
    _kill(worker.process.pid)  # between two registrations: the next one starts a new worker and says so
    worker.process.wait(10)
    logic.register(moving, fixed, transform)
    assert "restarted the registration worker, which had stopped (killed by signal 9)" in logic.lastStatus

    def kill_when_busy():  # while the worker registers
        deadline = time.monotonic() + 30
        while not worker.busy and time.monotonic() < deadline:
            time.sleep(0.001)
        _kill(worker.process.pid)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    with pytest.raises(WorkerError) as raised:
        logic.register(moving, fixed, transform)
    killer.join()
    assert str(raised.value) == (
        "the registration worker stopped (killed by signal 9); the next registration starts a new one"
    )
    assert moving.GetTransformNodeID() == transform.GetID()  # the scene is as the last registration left it
    logic.register(moving, fixed, transform)
    assert logic.lastStatus.startswith("Registered in") and "restarted" not in logic.lastStatus


def test_a_bad_input_is_an_error_and_the_worker_goes_on(slicer, scene, LabelReg, tmp_path):
    from LabelRegLib.core.errors import ModelFileError

    _pair, moving, fixed = _phantom(slicer)
    logic = LabelReg.LabelRegLogic()
    transform = logic.register(moving, fixed)
    pid = logic.engine().process.pid
    (tmp_path / "notes.pt").write_text("not a model")
    with pytest.raises(ModelFileError, match="notes.pt: is truncated, damaged or not a model file"):
        logic.register(moving, fixed, transform, modelPath=str(tmp_path / "notes.pt"))
    logic.register(moving, fixed, transform)
    assert logic.engine().process.pid == pid


@posix_only
def test_no_worker_survives_its_parent():
    code = """
        import sys, time
        sys.path.insert(0, {lib!r})
        from LabelRegLib.registration.worker_client import RegistrationWorker
        worker = RegistrationWorker()
        worker.wait(worker.submit({{"op": "load"}}), timeout=120)
        print(worker.process.pid, flush=True)
        time.sleep(600)
    """.format(lib=str(REPO / "LabelReg"))
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True, env=subprocess_env()
    )
    try:
        pid = int(parent.stdout.readline())
        assert not _gone(pid)
    finally:
        _kill(parent.pid)
        parent.wait(10)
    deadline = time.monotonic() + 15
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(pid), "the worker outlived the process that started it"


def test_register_live_updates_and_stop_never_import_torch_into_slicers_process(tmp_path):
    """Everything the panel does goes through the worker: Slicer's process never imports torch."""
    from LabelRegLib.core.io import write_volume

    pair = make_phantom_pair(1001)
    write_volume(pair.moving_image, tmp_path / "mr.nii.gz")
    write_volume(pair.fixed_image, tmp_path / "us.nii.gz")
    write_volume(pair.moving_labels[0], tmp_path / "gland.nii.gz")
    code = f"""
        import sys
        sys.path.insert(0, {str(REPO / "LabelReg")!r})
        import numpy as np
        from LabelRegLib.slicer import standalone as slicer_standalone
        slicer = slicer_standalone.install()
        import LabelReg
        from LabelRegLib.core.io import read_volume
        from LabelRegLib.slicer.mrml import set_segments_from_labelmap, update_volume_node

        scene = slicer.mrmlScene
        moving = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MR")
        fixed = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "US")
        update_volume_node(moving, read_volume({str(tmp_path / "mr.nii.gz")!r}))
        us = read_volume({str(tmp_path / "us.nii.gz")!r})
        update_volume_node(fixed, us)
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "MR gland")
        set_segments_from_labelmap(scene, segmentation, read_volume({str(tmp_path / "gland.nii.gz")!r}), "gland")
        logic = LabelReg.LabelRegLogic()
        transform = logic.register(moving, fixed, segmentationNode=segmentation, createLabelmap=True, showGlands=True)
        logic.startLiveUpdate(moving, fixed, transform)
        for shift in (1, 2):
            slicer.util.updateVolumeFromArray(fixed, np.roll(us.array, shift, axis=2))
            assert logic.waitForLiveResults(timeout=120)
        logic.stopLiveUpdate()
        print(logic.registrationCount, logic.lastStatus.replace("\\n", " | "))
        print(logic.modelCatalogue().device_summary())
        assert "torch" not in sys.modules, "torch was imported into Slicer's process"
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, env=subprocess_env()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    count, status = result.stdout.splitlines()[0].split(" ", 1)
    assert count == "3" and status.startswith("Registered in") and "live latency" in status
    assert result.stdout.splitlines()[1] == "available: cpu"
