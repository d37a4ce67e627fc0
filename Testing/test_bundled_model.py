"""The bundled model: small, loads safely, improves every demo pair, and its model card numbers reproduce."""

import numpy as np
import pytest

from LabelRegLib.cli import DEMO_SEEDS
from LabelRegLib.data import Case, load_data_folder
from LabelRegLib.evaluation import evaluate_cases
from LabelRegLib.model_file import default_model_path, read_model_header
from LabelRegLib.phantom import make_phantom_pair
from LabelRegLib.registration import Registrar

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registrar() -> Registrar:
    return Registrar(device="cpu")


def test_the_bundled_model_is_small_and_describes_itself():
    path = default_model_path()
    assert path.stat().st_size < 20e6
    header = read_model_header(path)
    assert header["storage"] == "float16" and header["architecture"]["network_type"] == "local"
    training = header["training"]
    assert training["validation_cases"] and training["steps"] > 0 and training["wall_time_s"] > 0
    stage2 = training["initial_model_training"]
    assert stage2["steps"] > 0 and stage2["initial_model_training"]["steps"] > 0  # stages 2 and 1 of the recipe are recorded too


@pytest.fixture(scope="module")
def demo_rows(registrar, tmp_path_factory) -> dict:
    """``labelreg demo``'s metrics rows, by phantom pair."""
    cases = []
    for seed in DEMO_SEEDS:
        pair = make_phantom_pair(seed)
        cases.append(Case(pair.name, pair.moving_image, pair.fixed_image, pair.moving_labels, pair.fixed_labels))
    _, rows = evaluate_cases(registrar, cases, tmp_path_factory.mktemp("demo"), pictures=False, log=lambda *_: None)
    return {case.name: [row for row in rows if row["case"] == case.name] for case in cases}


def test_every_demo_pair_gland_dice_rises(demo_rows):
    for name, (gland, *_landmarks) in demo_rows.items():
        assert gland["dice_after"] > gland["dice_before"], name


def test_every_demo_pair_landmark_tre_falls(demo_rows):
    for name, (_gland, *landmarks) in demo_rows.items():
        assert np.median([r["tre_mm_after"] for r in landmarks]) < np.median([r["tre_mm_before"] for r in landmarks]), name


def test_the_model_card_validation_numbers_reproduce(registrar, shared_data, tmp_path):
    """The held-out pairs named in the header give the README's medians (inference is deterministic on the CPU)."""
    names = read_model_header(default_model_path())["training"]["validation_cases"]
    cases = [case for case in load_data_folder(shared_data) if case.name in names]
    assert len(cases) == len(names)
    summary, _ = evaluate_cases(registrar, cases, tmp_path, pictures=False, log=lambda *_: None)
    assert summary["gland_dice_median"] == pytest.approx(MODEL_CARD["gland_dice_median"], abs=2e-3)
    assert summary["tre_mm_median"] == pytest.approx(MODEL_CARD["tre_mm_median"], abs=0.02)
    assert summary["folding_max"] == 0.0


# the numbers the README's model card states (full resolution, medians over the 9 held-out pairs)
MODEL_CARD = {"gland_dice_median": 0.824, "tre_mm_median": 5.07}
