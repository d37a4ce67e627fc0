"""Shared fixtures of the pytest suite (engine tests run on CPU, deterministic)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# LabelRegLib is installed by `pip install -e .`; make a plain checkout work too.
sys.path.insert(0, str(REPO / "LabelReg"))
SHARED_DATA = REPO.parent / "shared" / "data" / "mrus-prostate"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    yield


@pytest.fixture(scope="session")
def phantom():
    """Phantom pair of seed 0 (axial US)."""
    from LabelRegLib.data.phantom import make_phantom_pair

    return make_phantom_pair(0)


@pytest.fixture(scope="session")
def oblique_phantom():
    """Phantom pair of seed 1 with an oblique, anisotropic US grid."""
    from LabelRegLib.data.phantom import make_phantom_pair

    return make_phantom_pair(1, oblique=True)


@pytest.fixture
def shared_data() -> Path:
    """The example MR/TRUS data set beside the repository; skip when it is absent."""
    if not (SHARED_DATA / "moving_images").is_dir():
        pytest.skip(f"example data not found at {SHARED_DATA} (it lives in ../shared/data beside the checkout)")
    return SHARED_DATA


def oblique_geometry() -> np.ndarray:
    """An oblique, anisotropic IJK->RAS matrix used by several tests."""
    from LabelRegLib.core.volume import make_ijk_to_ras
    from LabelRegLib.data.phantom import _rotation

    return make_ijk_to_ras((0.8, 1.3, 2.1), (-12.5, 30.25, 7.0), _rotation(np.deg2rad([17.0, -23.0, 41.0])))


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory) -> Path:
    """Six phantom pairs written as a LabelReg data folder (NIfTI, 4D labels)."""
    from LabelRegLib.data.phantom import write_phantom_folder

    folder = tmp_path_factory.mktemp("phantoms")
    write_phantom_folder(folder, n_pairs=6)
    return folder


@pytest.fixture(scope="session")
def tiny_model(phantom_folder, tmp_path_factory) -> Path:
    """A 4-channel LocalNet trained for two steps on the phantom folder."""
    from helpers import train_tiny_model

    return train_tiny_model(phantom_folder, tmp_path_factory.mktemp("tiny_run"))


@pytest.fixture(scope="session")
def gland_model() -> Path:
    """The bundled gland segmentation model."""
    from LabelRegLib.nets.model_file import MODELS_DIR
    from LabelRegLib.registration.glands import DEFAULT_GLAND_MODEL_NAME

    return MODELS_DIR / DEFAULT_GLAND_MODEL_NAME


@pytest.fixture(scope="module")
def slicer():
    """Slicer's real MRML (slicer-core) with LabelReg's stand-ins for the application (LabelRegLib.slicer.standalone)."""
    return pytest.importorskip("LabelRegLib.slicer.standalone").install()


@pytest.fixture(scope="module")
def LabelReg(slicer):
    """The LabelReg module file, imported as Slicer imports it."""
    import LabelReg as module

    return module


@pytest.fixture
def scene(slicer):
    """The scene, empty before and after the test."""
    slicer.mrmlScene.Clear(0)
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(0)
