"""The bundled model: small, loads safely, improves every demo pair, was made by the committed recipe, and its model card numbers reproduce."""

import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from helpers import REPO, with_empty_border
from LabelRegLib.cli.demo import DEMO_SEEDS
from LabelRegLib.core.config import TrainConfig, train_config_from_ini
from LabelRegLib.data.cases import Case, load_data_folder
from LabelRegLib.data.phantom import make_phantom_pair
from LabelRegLib.evaluation.evaluate import evaluate_cases
from LabelRegLib.nets.model_file import MODELS_DIR, default_model_path, read_model_header
from LabelRegLib.registration.registrar import Registrar

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
    assert header["training_input_shape_kji"] == [26, 38, 28]  # the example US at 2.5 mm


def test_every_bundled_model_file_loads_with_the_weights_only_loader_and_all_fit_the_size_budget():
    from LabelRegLib.nets.gland_network import GlandNet
    from LabelRegLib.nets.model_file import load_weights_only
    from LabelRegLib.registration.glands import DEFAULT_GLAND_MODEL_NAME

    files = sorted(MODELS_DIR.glob("*.pt"))
    assert {path.name for path in files} == {default_model_path().name, DEFAULT_GLAND_MODEL_NAME}
    for path in files:
        payload = load_weights_only(path, "model file")  # torch.load(weights_only=True): no code can run
        assert payload["format"] == "labelreg-model"
    assert sum(path.stat().st_size for path in files) <= 20e6
    gland_header = read_model_header(MODELS_DIR / DEFAULT_GLAND_MODEL_NAME)
    assert gland_header["architecture"]["network_type"] == GlandNet.network_type
    assert 0.0 < gland_header["quality_dice_threshold"] < 1.0, "the flagging threshold chosen by cross-validation"


# the committed training recipe, stage by stage (LabelReg/Resources/Models)
RECIPE = [
    "labelreg_localnet.ini",
    "labelreg_localnet_stage2.ini",
    "labelreg_localnet_stage3.ini",
    "labelreg_localnet_stage4.ini",
]
RECORDED_SETTINGS = [
    "initial_model",
    "learning_rate",
    "minibatch_size",
    "corner_scale",
    "translation_mm",
    "fixed_translation_mm",
    "ema_decay",
    "swa_start",
    "swa_every",
    "segmentation_weight",
    "seed",
]


def test_the_committed_recipe_chains_its_stages_and_is_the_one_the_bundled_model_records():
    configs = [train_config_from_ini(MODELS_DIR / name) for name in RECIPE]
    assert not configs[0].initial_model
    for earlier, later in zip(configs, configs[1:]):
        assert later.initial_model == earlier.file_model_save  # each stage starts from the file the one before writes
    assert (REPO / configs[-1].file_model_save).resolve() == default_model_path()
    recorded = read_model_header(default_model_path())["training"]
    defaults = TrainConfig()
    for name, config in zip(reversed(RECIPE), reversed(configs)):  # the header nests each stage's starting model
        assert recorded["steps"] == config.total_iterations, name
        for key in RECORDED_SETTINGS:  # headers written before a setting existed lack it: it was at its default
            assert recorded.get(key, getattr(defaults, key)) == getattr(config, key), (name, key)
        recorded = recorded.get("initial_model_training")
    assert recorded is None


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


def test_no_demo_pair_folds(demo_rows):
    """The phantoms are smaller than the pairs the model was trained on (23 x 28 x 25 against 26 x 38 x 28 on the
    working grid); run at their own size the field folded along every border (~10 % of the voxels)."""
    for name, (gland, *_landmarks) in demo_rows.items():
        assert gland["folding"] == 0.0, name


def test_a_us_larger_than_the_training_pairs_is_registered_with_a_warning_naming_it(registrar):
    pair = make_phantom_pair(DEMO_SEEDS[0])
    fixed = pair.fixed_image
    larger = with_empty_border(fixed, 12, "wide_us")  # 15 mm more on every side
    with pytest.warns(UserWarning, match=r"wide_us: its field of view is 35x40x37 voxels .* larger than the 26x38x28"):
        result = registrar.register(pair.moving_image, larger)
    assert result.displacement.shape[:3] == larger.shape
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the demo phantoms are smaller: padded, no warning
        registrar.register(pair.moving_image, fixed)


def test_every_demo_pair_landmark_tre_falls(demo_rows):
    for name, (_gland, *landmarks) in demo_rows.items():
        assert np.median([r["tre_mm_after"] for r in landmarks]) < np.median([r["tre_mm_before"] for r in landmarks]), (
            name
        )


@pytest.mark.parametrize("pipeline", ["network alone", "default"])
def test_the_model_card_validation_numbers_reproduce(registrar, pipeline, shared_data, tmp_path):
    """The held-out pairs named in the header give the model card's medians (inference is deterministic on the CPU):
    the network alone (from the centres, no mirroring: how the model was chosen) and the default pipeline (best of
    the centred and glands starts, mirrored)."""
    names = read_model_header(default_model_path())["training"]["validation_cases"]
    cases = [case for case in load_data_folder(shared_data) if case.name in names]
    assert len(cases) == len(names)
    if pipeline == "network alone":
        registrar, alignment = Registrar(device="cpu", mirror_axes="", gland_model=False), "centers"
    else:
        assert registrar.default_alignment() == "best" and registrar.mirror_axes == "j"
        alignment = None
    summary, _ = evaluate_cases(registrar, cases, tmp_path, alignment, pictures=False, log=lambda *_: None)
    assert summary["gland_dice_median"] == pytest.approx(MODEL_CARD[pipeline]["gland_dice_median"], abs=2e-3)
    assert summary["tre_mm_median"] == pytest.approx(MODEL_CARD[pipeline]["tre_mm_median"], abs=0.02)
    assert summary["folding_max"] == 0.0


# the numbers the model card (LabelReg/Resources/Models/labelreg_localnet.md) states (full resolution, medians over
# the 9 held-out pairs; TRE: the median over all their landmarks)
MODEL_CARD = {
    "network alone": {"gland_dice_median": 0.830, "tre_mm_median": 4.78},
    "default": {"gland_dice_median": 0.837, "tre_mm_median": 5.31},
}


@pytest.mark.parametrize("name, estimate", [("labelreg_localnet", "0.804"), ("labelreg_glands", "0.848")])
def test_a_model_card_fits_one_screen_and_opens_with_the_cross_validated_estimate(name, estimate):
    card = (REPO / "LabelReg" / "Resources" / "Models" / f"{name}.md").read_text()
    assert len(card.splitlines()) <= 80
    first_number = re.search(r"\d+\.\d+", card.split("## How good is it", 1)[1]).group()
    assert first_number == estimate  # the cross-validated Dice, before any other number
    assert (
        f"({name}.decisions.md)" in card
        and (REPO / "LabelReg" / "Resources" / "Models" / f"{name}.decisions.md").is_file()
    )


def test_the_per_pair_picture_is_drawn_from_a_cross_validation_table(tmp_path):
    from LabelRegLib.core.writes import verify_png

    (tmp_path / "per_case.csv").write_text(
        "case,fold,dice_before,dice_after,tre_mm_before,tre_mm_after,folding\n"
        "a,0,0.70,0.80,9.0,6.0,0\nb,1,0.60,0.55,11.0,12.0,0\nc,2,0.75,0.85,8.0,5.5,0\n"
    )
    script = REPO / "Testing" / "Pictures" / "render_crossval_pairs.py"
    run = subprocess.run(
        [sys.executable, script, tmp_path / "per_case.csv", "--output", tmp_path / "pairs.png"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    verify_png(tmp_path / "pairs.png")
