"""Training settings: one schema for the ``.ini`` files, the ``labelreg train`` flags and the model header.

Every setting is a field of :class:`TrainConfig` (declared with :func:`.settings.setting`) whose metadata holds
its ``.ini`` section, its help text, its unit and what values it allows. Everything
else is generated from that: the sections and keys :func:`train_config_from_ini`
reads and :func:`write_ini` writes, the ``labelreg train`` flags and their
``--help`` (:func:`add_arguments`), the checks of :meth:`TrainConfig.validate`,
and the training record in the model header (:func:`training_record`).

The original label-reg tutorial's ``config_demo.ini`` keeps its meaning::

    [Data]      dir_moving_image, dir_fixed_image, dir_moving_label, dir_fixed_label
    [Network]   network_type
    [Loss]      similarity_type, similarity_scales, regulariser_type, regulariser_weight
    [Train]     total_iterations, minibatch_size, learning_rate,
                freq_info_print, freq_model_save, file_model_save
    [Inference] file_model_saved, dir_moving_image, dir_fixed_image, dir_save,
                dir_moving_label, dir_fixed_label

LabelReg's own settings live in the same four sections.
"""

from __future__ import annotations

import configparser
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .device import DEVICE_CHOICES
from .errors import InputError
from .settings import parse_value, setting, validate_settings

# Allowed values, defined here once (the modules that implement them import these).
NETWORK_TYPES = ("local", "global", "composite")
GLAND_NETWORK_TYPE = "gland-unet"  # the gland segmentation network (glands.py); not a registration network
NORMS = ("batch", "instance", "none")
SIMILARITY_TYPES = ("dice", "jaccard", "cross-entropy", "mean-squared")
REGULARISER_TYPES = ("bending", "gradient-l2", "gradient-l1")
ALIGNMENT_MODES = ("centers", "physical", "glands")
# at registration also "best": from the centres and from the glands, keeping the registration whose self-check
# (quality.py) is better; not a training setting (it needs the trained network); and "auto", the loaded model's
# default (registration.Registrar.default_alignment)
REGISTRATION_ALIGNMENTS = ("auto", *ALIGNMENT_MODES, "best")
GLAND_TRANSFORMS = ("translation", "rigid", "similarity")  # how the glands alignment moves the MR gland
LABEL_SAMPLING = ("one", "all")
FLIP_AXES = "ijk"
SECTION_NAMES = ("Data", "Network", "Loss", "Train")
# the data folders of a case layout (data/cases.py) and the tutorial's [Data] keys naming each
FOLDER_KEYS = {
    "moving_images": "dir_moving_image",
    "fixed_images": "dir_fixed_image",
    "moving_labels": "dir_moving_label",
    "fixed_labels": "dir_fixed_label",
}
INFERENCE_KEYS = (
    "file_model_saved",
    "dir_moving_image",
    "dir_fixed_image",
    "dir_save",
    "dir_moving_label",
    "dir_fixed_label",
)


def _device_problem(name: str) -> str:
    return "" if name.split(":")[0] in DEVICE_CHOICES else f"allowed: {', '.join(DEVICE_CHOICES)} or cuda:N"


def _flip_axes_problem(axes: str) -> str:
    return "allowed: the letters i, j and k" if set(axes) - set(FLIP_AXES) else ""


@dataclass
class TrainConfig:
    # one setting a line: the schema reads as a table
    # fmt: off
    # [Data]: one folder with moving_images/ fixed_images/ moving_labels/ fixed_labels/, or the four folders
    data_dir: str = setting("", "Data", "folder with moving_images/, fixed_images/, moving_labels/, fixed_labels/", record=False)
    dir_moving_image: str = setting("", "Data", "moving (MR) images folder (instead of data_dir)", record=False)
    dir_fixed_image: str = setting("", "Data", "fixed (US) images folder", record=False)
    dir_moving_label: str = setting("", "Data", "moving labels folder (3D/4D label files or .seg.nrrd)", record=False)
    dir_fixed_label: str = setting("", "Data", "fixed labels folder (same names, same landmarks in the same order)", record=False)
    # [Network]
    network_type: str = setting("local", "Network", "the network", choices=NETWORK_TYPES)
    num_channel_initial: int = setting(16, "Network", "channels of the first layer (doubles at each level)", minimum=1, maximum=256)
    ddf_levels: list = setting([0, 1, 2, 3, 4], "Network", "levels whose DDF outputs are summed, e.g. '[0, 1, 2, 3, 4]'", minimum=0, maximum=4,
                              empty=False)
    norm: str = setting("batch", "Network", "normalisation layers (batch: the original)", choices=NORMS)
    # [Loss]
    similarity_type: str = setting("dice", "Loss", "label similarity", choices=SIMILARITY_TYPES)
    similarity_scales: list = setting([0, 1, 2, 4, 8, 16], "Loss", "Gaussian smoothing scales of the labels, e.g. '[0, 1, 2, 4, 8, 16]'",
                                      unit="voxels", minimum=0, maximum=64, empty=False)
    regulariser_type: str = setting("bending", "Loss", "deformation regulariser", choices=REGULARISER_TYPES)
    regulariser_weight: float = setting(0.5, "Loss", "weight of the regulariser", minimum=0.0, maximum=1e6)
    # [Train]
    total_iterations: int = setting(1000, "Train", "training steps", unit="steps", minimum=1, maximum=10**8)
    minibatch_size: int = setting(4, "Train", "image pairs per step (per process under torchrun)", minimum=1, maximum=1024)
    learning_rate: float = setting(1e-4, "Train", "Adam learning rate (0: the weights stay as they start)", minimum=0.0, maximum=1.0)
    learning_rate_milestones: list = setting([], "Train", "steps after which the learning rate is multiplied by learning_rate_decay, e.g. '[6000]'",
                                             unit="steps", minimum=1, maximum=10**8)
    learning_rate_decay: float = setting(0.1, "Train", "factor applied to the learning rate at each milestone", minimum=1e-6, maximum=1.0)
    freq_info_print: int = setting(10, "Train", "print progress every N steps", unit="steps", minimum=1, maximum=10**8, record=False)
    freq_model_save: int = setting(100, "Train", "write the checkpoint every N steps", unit="steps", minimum=1, maximum=10**8, record=False)
    freq_validation: int = setting(50, "Train", "validate every N steps", unit="steps", minimum=1, maximum=10**8, record=False)
    file_model_save: str = setting("", "Train", "final model file (default <output_dir>/model.pt)", record=False)
    model_float16: bool = setting(False, "Train", "store the final model's weights as float16 (half the file; loaded as float32)")
    output_dir: str = setting("labelreg-run", "Train", "folder for checkpoint, metrics.csv, curves.png, config.ini", record=False)
    validation_fraction: float = setting(0.1, "Train", "share of the pairs held out for validation", minimum=0.0, maximum=0.9)
    device: str = setting("auto", "Train", f"compute device: {', '.join(DEVICE_CHOICES)} or cuda:N", record=False,
                          check=_device_problem)
    initial_alignment: str = setting("centers", "Train", "alignment before the network (glands: the predicted MR gland onto the predicted US gland)",
                                     choices=ALIGNMENT_MODES)
    # translation: the best held-out start of the three (Testing/Benchmarks/crossval_gland_alignment.py, labelreg_glands.md)
    gland_transform: str = setting("translation", "Train", "how the glands alignment moves the MR gland", choices=GLAND_TRANSFORMS)
    gland_model: str = setting("", "Train", "gland segmentation model of the glands alignment (default: the bundled one)", record=False)
    working_spacing: float = setting(0.0, "Train", "working voxel size (0 = the fixed image's own grid)", unit="mm", minimum=0.0, maximum=50.0)
    corner_scale: float = setting(0.1, "Train", "random affine augmentation strength (0 = off)", minimum=0.0, maximum=1.0)
    translation_mm: float = setting(0.0, "Train", "random shift of the moving side, uniform in +-V per axis (0 = off)", unit="mm",
                                    minimum=0.0, maximum=200.0)
    fixed_translation_mm: float = setting(0.0, "Train", "random shift of the fixed side within its field of view, uniform in +-V per axis (0 = off)",
                                          unit="mm", minimum=0.0, maximum=200.0)
    flip_axes: str = setting("", "Train", "working-grid axes (letters i, j, k) along which a whole pair is mirrored with probability 1/2, "
                                          "e.g. 'j' (the pair's left-right axis)", check=_flip_axes_problem)
    intensity_gamma: float = setting(0.0, "Train", "random gamma: standard deviation of log(gamma) (0 = off)", minimum=0.0, maximum=5.0)
    label_sampling: str = setting("one", "Train", "landmarks per pair and step: one (the original) or all", choices=LABEL_SAMPLING)
    phantom_pairs: int = setting(0, "Train", "synthetic phantom pairs added to the training share (never to validation)", minimum=0, maximum=10000)
    initial_model: str = setting("", "Train", "model file to start from (fine-tuning, e.g. the bundled model on new data)")
    ema_decay: float = setting(0.0, "Train", "validate and save an exponential moving average of the weights with this per-step decay (0 = off)",
                               minimum=0.0, maximum=0.999999)
    swa_start: int = setting(0, "Train", "from this step on, average the network (the moving average if ema_decay is on) every swa_every "
                                         "steps with equal weights, and save that average (0 = off)", unit="steps", minimum=0, maximum=10**8)
    swa_every: int = setting(250, "Train", "steps between two snapshots of the weight average of swa_start", unit="steps", minimum=1, maximum=10**8)
    segmentation_weight: float = setting(0.0, "Train", "weight of an auxiliary gland segmentation task during training (0 = off)",
                                         minimum=0.0, maximum=1e6)
    seed: int = setting(0, "Train", "random seed (split, sampling, augmentation, initial weights)", minimum=0, maximum=2**32 - 1)
    deterministic: bool = setting(False, "Train", "use deterministic algorithms only", record=False)
    # fmt: on

    def model_path(self) -> Path:
        return (
            Path(self.file_model_save).expanduser()
            if self.file_model_save
            else Path(self.output_dir).expanduser() / "model.pt"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, source: str = "the training settings") -> TrainConfig:
        """Check every value against its setting; raises :class:`InputError` naming ``source`` (a file or the
        command line), the key, the value and what is allowed. Returns itself."""
        return validate_settings(self, source)


def sections() -> dict:
    """``.ini`` section -> its keys, in the order of :class:`TrainConfig`."""
    return {name: [f.name for f in fields(TrainConfig) if f.metadata["section"] == name] for name in SECTION_NAMES}


def add_arguments(parser) -> None:
    """One ``--key`` flag per setting, with its help, unit and allowed values (``labelreg train``)."""
    for f in fields(TrainConfig):
        meta, extra = f.metadata, []
        if meta["choices"]:
            extra.append(", ".join(meta["choices"]))
        if meta["unit"]:
            extra.append(meta["unit"])
        extra.append(f"default {_ini_text(f.default_factory() if callable(f.default_factory) else f.default)!s}")
        parser.add_argument(
            f"--{f.name}",
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            default=None,
            metavar="V",
            help=f"[{meta['section']}] {meta['help']} ({'; '.join(extra)})",
        )


def config_from(ini: str | Path | None = None, flags: dict | None = None) -> TrainConfig:
    """The settings of an ``.ini`` file (or the defaults), then the flags given (name -> text); validated.
    The file is checked on reading, so a problem found after the flags is the flags'."""
    config = train_config_from_ini(ini) if ini else TrainConfig()
    by_name = {f.name: f for f in fields(TrainConfig)}
    for name, text in (flags or {}).items():
        if text is not None:
            setattr(config, name, parse_value(text, by_name[name]))
    return config.validate("the command line")


def read_ini(path: str | Path) -> configparser.ConfigParser:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "configuration file not found")
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    try:
        parser.read(path)
    except (configparser.Error, UnicodeDecodeError) as error:
        raise InputError(path, f"is not a valid .ini file ({str(error).splitlines()[0]})") from error
    return parser


def train_config_from_ini(path: str | Path) -> TrainConfig:
    """A validated :class:`TrainConfig` from an ``.ini`` file: an unknown section or key, or a bad value, is an
    error naming the file, the key, the value and what is allowed."""
    parser = read_ini(path)
    config = TrainConfig()
    by_name = {f.name: f for f in fields(TrainConfig)}
    for section in parser.sections():
        if section == "Inference":
            continue
        if section not in SECTION_NAMES:
            raise InputError(
                path,
                f"unknown section [{section}]; allowed: {', '.join(f'[{s}]' for s in (*SECTION_NAMES, 'Inference'))}",
            )
        for key, text in parser.items(section):
            if key not in by_name:
                raise InputError(path, f"unknown key '{key}' in section [{section}]")
            setattr(config, key, parse_value(text, by_name[key], str(path)))
    return config.validate(str(path))


def inference_settings_from_ini(path: str | Path) -> dict:
    """The ``[Inference]`` section as a dict (paths expanded), with the ``[Train]`` keys it needs."""
    parser = read_ini(path)
    if not parser.has_section("Inference"):
        raise InputError(path, "has no [Inference] section")
    unknown = [key for key in parser.options("Inference") if key not in INFERENCE_KEYS]
    if unknown:
        raise InputError(
            path, f"unknown key '{unknown[0]}' in section [Inference]; allowed: {', '.join(INFERENCE_KEYS)}"
        )
    settings = {key: str(Path(value).expanduser()) for key, value in parser.items("Inference")}
    for key in ("device", "initial_alignment"):
        if parser.has_option("Train", key):
            settings[key] = parser.get("Train", key)
    return settings


def _ini_text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_ini(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved configuration in its sections (readable by :func:`train_config_from_ini`)."""
    import io

    from .writes import write_text

    parser = configparser.ConfigParser()
    values = config.to_dict()
    for section, keys in sections().items():
        parser[section] = {key: _ini_text(values[key]) for key in keys}
    text = io.StringIO()
    parser.write(text)
    write_text(path, text.getvalue())


def training_record(config: TrainConfig) -> dict:
    """The settings a model header's training record keeps (everything that shapes the model; not paths,
    output frequencies or the device)."""
    return {f.name: getattr(config, f.name) for f in fields(TrainConfig) if f.metadata["record"]}


@dataclass
class GlandSettings:
    """The settings of a gland segmentation training (:mod:`.gland_training`); ``labelreg train-glands`` flags are
    generated from these fields and checked by :func:`validate_settings`, as the registration training's are."""

    # fmt: off
    steps: int = setting(1000, "Glands", "training steps", "steps", minimum=1, maximum=10**8)
    num_channel_initial: int = setting(8, "Glands", "channels of the first layer (doubles at each level)", minimum=1, maximum=256)
    # the model header's range of working_spacing_mm (model_file.py)
    spacing_mm: float = setting(3.5, "Glands", "segmentation grid voxel size", "mm", minimum=0.1, maximum=50.0)
    samples_per_step: int = setting(4, "Glands", "images per step, half MR and half US", minimum=2, maximum=1024)
    learning_rate: float = setting(1e-3, "Glands", "Adam learning rate (ten times lower for the last fifth of the steps)",
                                   minimum=0.0, maximum=1.0)
    corner_scale: float = setting(0.15, "Glands", "random affine augmentation strength", minimum=0.0, maximum=1.0)
    shift_mm: float = setting(12.0, "Glands", "random shift, uniform in +-V per axis", "mm", minimum=0.0, maximum=200.0)
    intensity_gamma: float = setting(0.3, "Glands", "random gamma: standard deviation of log(gamma)", minimum=0.0, maximum=5.0)
    crop_probability: float = setting(0.3, "Glands", "chance that a slab at one border of the field of view is blanked",
                                      minimum=0.0, maximum=1.0)
    phantom_pairs: int = setting(30, "Glands", "synthetic phantom pairs added to the training cases", minimum=0, maximum=10000)
    seed: int = setting(0, "Glands", "random seed (sampling, augmentation, initial weights)", minimum=0, maximum=2**32 - 1)
    # fmt: on

    def validate(self, source: str = "the gland training settings") -> GlandSettings:
        return validate_settings(self, source)
