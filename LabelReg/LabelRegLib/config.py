"""Training and inference settings, readable from the original label-reg ``.ini`` files.

The original tutorial's sections and keys keep their meaning::

    [Data]      dir_moving_image, dir_fixed_image, dir_moving_label, dir_fixed_label
    [Network]   network_type
    [Loss]      similarity_type, similarity_scales, regulariser_type, regulariser_weight
    [Train]     total_iterations, minibatch_size, learning_rate,
                freq_info_print, freq_model_save, file_model_save
    [Inference] file_model_saved, dir_moving_image, dir_fixed_image, dir_save,
                dir_moving_label, dir_fixed_label

LabelReg's own additions live in the same sections (see :class:`TrainConfig`
for their meaning and defaults): ``data_dir``; ``num_channel_initial``,
``ddf_levels``, ``norm``; ``validation_fraction``, ``freq_validation``,
``learning_rate_milestones``, ``learning_rate_decay``, ``device``,
``initial_alignment``, ``working_spacing``, ``seed``, ``corner_scale``,
``translation_mm``, ``fixed_translation_mm``, ``flip_axes``,
``intensity_gamma``, ``label_sampling``, ``phantom_pairs``, ``initial_model``,
``ema_decay``, ``swa_start``, ``swa_every``, ``segmentation_weight``,
``model_float16``, ``output_dir``, ``deterministic``.
Every key is also a command-line flag of ``labelreg train`` (``--key``).
"""

from __future__ import annotations

import ast
import configparser
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class TrainConfig:
    # [Data]: one folder with moving_images/ fixed_images/ moving_labels/ fixed_labels/, or the four folders
    data_dir: str = ""
    dir_moving_image: str = ""
    dir_fixed_image: str = ""
    dir_moving_label: str = ""
    dir_fixed_label: str = ""
    # [Network]
    network_type: str = "local"
    num_channel_initial: int = 16
    ddf_levels: list = field(default_factory=lambda: [0, 1, 2, 3, 4])
    norm: str = "batch"
    # [Loss]
    similarity_type: str = "dice"
    similarity_scales: list = field(default_factory=lambda: [0, 1, 2, 4, 8, 16])
    regulariser_type: str = "bending"
    regulariser_weight: float = 0.5
    # [Train]
    total_iterations: int = 1000
    minibatch_size: int = 4
    learning_rate: float = 1e-4
    learning_rate_milestones: list = field(default_factory=list)  # steps after which the learning rate is multiplied by learning_rate_decay
    learning_rate_decay: float = 0.1
    freq_info_print: int = 10
    freq_model_save: int = 100
    freq_validation: int = 50
    file_model_save: str = ""  # the final model file; default <output_dir>/model.pt
    model_float16: bool = False  # store the final model's weights as float16 (half the file size; loaded as float32)
    output_dir: str = "labelreg-run"
    validation_fraction: float = 0.1
    device: str = "auto"
    initial_alignment: str = "centers"
    working_spacing: float = 0.0  # mm; 0 = the fixed image's own grid
    corner_scale: float = 0.1
    translation_mm: float = 0.0  # random shift of the moving image and labels, uniform in +-translation_mm per axis
    fixed_translation_mm: float = 0.0  # the same for the fixed image and labels (moved within their field of view)
    flip_axes: str = ""  # working-grid axes ("i", "j", "k") along which a pair (both images, all labels) is mirrored with probability 1/2
    intensity_gamma: float = 0.0  # each image's [0, 1] intensities raised to exp(N(0, intensity_gamma)); 0 = off
    label_sampling: str = "one"  # "one": one landmark per pair (the original); "all": every landmark of the pair
    phantom_pairs: int = 0  # synthetic phantom pairs added to the training share (never to validation)
    initial_model: str = ""  # model file whose weights start the training (fine-tuning); same architecture
    ema_decay: float = 0.0  # > 0: validate and save an exponential moving average of the weights (per step)
    swa_start: int = 0  # > 0: from this step on, validate and save the equal-weight average of the network every swa_every steps
    swa_every: int = 250  # steps between two snapshots of the stochastic weight average
    segmentation_weight: float = 0.0  # > 0: also learn to segment the gland in both images (a training-only task) with this weight
    seed: int = 0
    deterministic: bool = False

    def model_path(self) -> Path:
        return Path(self.file_model_save).expanduser() if self.file_model_save else Path(self.output_dir).expanduser() / "model.pt"

    def to_dict(self) -> dict:
        return asdict(self)


SECTIONS = {
    "Data": ["data_dir", "dir_moving_image", "dir_fixed_image", "dir_moving_label", "dir_fixed_label"],
    "Network": ["network_type", "num_channel_initial", "ddf_levels", "norm"],
    "Loss": ["similarity_type", "similarity_scales", "regulariser_type", "regulariser_weight"],
}
SECTIONS["Train"] = [f.name for f in fields(TrainConfig) if not any(f.name in keys for keys in SECTIONS.values())]

INFERENCE_KEYS = ("file_model_saved", "dir_moving_image", "dir_fixed_image", "dir_save", "dir_moving_label", "dir_fixed_label")


def parse_value(text: str, like):
    """Convert an ini string to the type of ``like`` (lists as ``[0, 1, 2]``, booleans as true/false)."""
    text = text.strip()
    if isinstance(like, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(like, int):
        return int(float(text))
    if isinstance(like, float):
        return float(text)
    if isinstance(like, list):
        value = ast.literal_eval(text)
        return list(value) if isinstance(value, (list, tuple)) else [value]
    return text


def read_ini(path: str | Path) -> configparser.ConfigParser:
    from .errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "configuration file not found")
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    try:
        parser.read(path)
    except configparser.Error as error:
        raise InputError(path, f"is not a valid .ini file ({error})") from error
    return parser


def train_config_from_ini(path: str | Path) -> TrainConfig:
    """A :class:`TrainConfig` from an ini file (unknown keys are an error, naming the key)."""
    from .errors import InputError

    parser = read_ini(path)
    config = TrainConfig()
    known = {f.name for f in fields(TrainConfig)}
    for section in parser.sections():
        if section == "Inference":
            continue
        for key, text in parser.items(section):
            if key not in known:
                raise InputError(path, f"unknown key '{key}' in section [{section}]")
            try:
                setattr(config, key, parse_value(text, getattr(config, key)))
            except (ValueError, SyntaxError) as error:
                raise InputError(path, f"[{section}] {key}: cannot read '{text}' ({error})") from error
    return config


def inference_settings_from_ini(path: str | Path) -> dict:
    """The ``[Inference]`` section as a dict (paths expanded), with the Network keys it needs."""
    from .errors import InputError

    parser = read_ini(path)
    if not parser.has_section("Inference"):
        raise InputError(path, "has no [Inference] section")
    settings = {key: str(Path(value).expanduser()) for key, value in parser.items("Inference") if key in INFERENCE_KEYS}
    if parser.has_option("Train", "device"):
        settings["device"] = parser.get("Train", "device")
    if parser.has_option("Train", "initial_alignment"):
        settings["initial_alignment"] = parser.get("Train", "initial_alignment")
    return settings


def write_ini(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved configuration in the same sections (readable by :func:`train_config_from_ini`)."""
    from .io import atomic_output

    parser = configparser.ConfigParser()
    values = config.to_dict()
    for section, keys in SECTIONS.items():
        parser[section] = {key: str(values[key]) for key in keys}
    with atomic_output(path) as temporary:
        with open(temporary, "w") as handle:
            parser.write(handle)
