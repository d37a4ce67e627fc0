"""What a trained model's header records, and starting a training from another model (same architecture)."""

from __future__ import annotations

import time
from pathlib import Path

from .. import __version__
from ..core.config import NETWORK_TYPES, TrainConfig, training_record
from ..core.errors import ModelFileError
from ..data.preprocess import DEFAULT_NORMALISATION
from ..nets.model_file import model_settings_flags, read_model_payload


def architecture_of(config: TrainConfig) -> dict:
    architecture = {
        "network_type": config.network_type,
        "num_channel_initial": config.num_channel_initial,
        "norm": config.norm,
    }
    if config.network_type != "global":
        architecture["ddf_levels"] = list(config.ddf_levels)
    return architecture


def model_header(config: TrainConfig, data, run: dict, validation: dict, initial_model_header: dict) -> dict:
    """The header of a model trained with ``config`` on ``data`` (a :class:`.TrainingData`): architecture, what
    inference needs (working spacing, training size, normalisation, alignment), the training record (the settings,
    the data, ``run``: steps, wall time, snapshots, device; nested, how the starting model was trained) and the
    validation metrics."""
    return {
        "architecture": architecture_of(config),
        "working_spacing_mm": config.working_spacing or None,
        "training_input_shape_kji": list(
            data.train_shape
        ),  # the training tensors' size: inference pads smaller inputs to it
        "intensity_normalisation": DEFAULT_NORMALISATION,
        "initial_alignment": config.initial_alignment,
        "training": {
            **training_record(config),  # every setting that shapes the model (config.py's schema)
            "data": config.data_dir or config.dir_moving_image,
            "n_train_pairs": len(data.train_idx),
            "n_validation_pairs": len(data.val_idx),
            "validation_cases": [data.cases[i].name for i in data.val_idx],
            **run,
            "initial_model_training": initial_model_header.get(
                "training"
            ),  # and, nested, its own starting model: the full recipe
        },
        "validation": validation,
        "labelreg_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def load_initial_weights(config: TrainConfig, network) -> dict:
    """Load ``initial_model`` (a LabelReg model file of the same architecture) into ``network``; its header."""
    path = Path(config.initial_model).expanduser()
    header, state = read_model_payload(path)
    kind = (header.get("architecture") or {}).get("network_type")
    if kind not in NETWORK_TYPES:  # its settings would be no training's: suggest none
        raise ModelFileError(
            path,
            f"is a {kind!r} model, not a registration network ({', '.join(NETWORK_TYPES)}); a training starts only "
            "from a registration model, e.g. the bundled labelreg_localnet.pt",
        )
    if header.get("architecture") != architecture_of(config):
        raise ModelFileError(
            path,
            f"has architecture {header.get('architecture')}, but the training settings ask for {architecture_of(config)}; "
            f"train with the model's settings ({' '.join(model_settings_flags(header))})",
        )
    network.load_state_dict(state)  # float16 weights are copied into the float32 parameters
    return header
