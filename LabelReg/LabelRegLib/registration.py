"""Registering pairs with a trained model: load once, register many.

The result is a complete moving <-> fixed mapping (docs/design.md, "Data flow"): a RAS
mm displacement ``u`` on the fixed image's own grid such that the fixed point
``x`` corresponds to the moving point ``x + u(x)``, the initial alignment
included.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .errors import InputError
from .memory import check_registration_memory
from .model_file import LoadedModel, load_model
from .networks import PAD_MULTIPLE
from .preprocess import prepare_pair, working_geometry
from .spatial import resample_volume
from .volume import Volume, check_volume


@dataclass
class RegistrationResult:
    displacement: Volume  # RAS mm [K, J, I, 3] on the fixed grid: fixed x -> moving x + u(x)
    initial: np.ndarray  # 4x4 fixed RAS -> moving RAS used before the network
    runtime_s: float
    device: str
    # what the registration warned of (e.g. a US larger than the training volumes)
    warnings: list = field(default_factory=list)
    quality: object = None  # quality.Quality: the registration's self-check (None without a gland model)
    glands: tuple = ()  # the predicted (MR, US) glands (glands.Gland), when a gland model ran
    stage_s: dict = field(default_factory=dict)  # seconds per stage: segmentation, alignment, network, composition

    def warp(self, moving: Volume) -> Volume:
        """``moving`` (an image or a label) resampled onto the fixed grid through the registration."""
        return warp_volume(moving, self.displacement)


def warp_volume(moving: Volume, displacement: Volume, interpolation: str = "linear") -> Volume:
    """Resample ``moving`` onto the grid of ``displacement`` (RAS mm field, resampling direction)."""
    return resample_volume(
        moving,
        displacement.shape,
        displacement.ijk_to_ras,
        displacement_ras=displacement.array,
        interpolation=interpolation,
    )


class Registrar:
    """A loaded model on a device; :meth:`register` maps a moving MR onto a fixed US."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str = "auto",
        mirror_axes: str = "",
        gland_model: str | Path | None | bool = None,
    ):
        """``mirror_axes``: working-grid axes (letters ``i``, ``j``, ``k``) along which the pair is also registered
        mirrored, the fields averaged (test-time augmentation; see :func:`mirrored_prediction`). ``gland_model``:
        the gland segmentation model of the ``glands`` alignment and of the quality score (None: the bundled one,
        when it is there; False: none, so no quality score)."""
        import torch

        from .device import select_device
        from .errors import ModelFileError
        from .networks import RegistrationNet

        if set(mirror_axes) - set("ijk"):
            raise InputError("--mirror", f"'{mirror_axes}': give working-grid axes among i, j, k")
        self.device = select_device(device)
        self.model: LoadedModel = load_model(model_path, self.device)
        if not isinstance(self.model.network, RegistrationNet):
            raise ModelFileError(self.model.path, "is a gland segmentation model, not a registration model")
        self.network = self.model.network.to(memory_format=torch.channels_last_3d)
        self.mirror_axes = mirror_axes
        self.glands = load_gland_segmenter(gland_model, self.device)
        # how the glands alignment moves the MR gland: as the model was trained, else the setting's default
        self.gland_transform = self.model.header.get("training", {}).get("gland_transform", TrainConfig.gland_transform)

    @property
    def header(self) -> dict:
        return self.model.header

    def check_inputs(self, moving: Volume, fixed: Volume) -> None:
        """Refuse, naming the volume, what cannot give a meaningful result or would exhaust the machine: no usable
        content, a working grid smaller than the network's coarsest level, more memory than is available."""
        for volume, role in ((moving, "moving volume"), (fixed, "fixed volume")):
            check_volume(volume, volume.name or role)
            if float(volume.array.max()) == float(volume.array.min()):  # nothing to align: the result would be noise
                raise InputError(
                    volume.name or role, f"has no usable content: every voxel is {float(volume.array.min()):g}"
                )
        spacing_mm = self.model.header.get("working_spacing_mm")
        working_shape, _ = working_geometry(fixed, spacing_mm)
        if min(working_shape) < PAD_MULTIPLE:  # the network's coarsest level would hold less than one voxel
            raise InputError(
                fixed.name or "fixed volume",
                f"is too small to register: {'x'.join(map(str, working_shape))} voxels at the model's working "
                f"spacing ({spacing_mm or 'its own'} mm); the network needs at least {PAD_MULTIPLE} along each axis",
            )
        padded_shape = tuple(max(n, m) for n, m in zip(working_shape, self.network.min_input_shape or working_shape))
        channels = self.model.header["architecture"].get("num_channel_initial", 32)
        check_registration_memory(fixed.name or "fixed volume", padded_shape, fixed.shape, channels, self.device)

    def register(
        self, moving: Volume, fixed: Volume, alignment: str | None = None, passes: int | None = None, warn: bool = True
    ) -> RegistrationResult:
        """Register ``moving`` (MR) to ``fixed`` (US). ``alignment``: ``centers`` or ``physical``
        (default: the one the model was trained with). ``passes`` > 1 runs the network again on the
        moving image warped by the previous passes and composes the fields (a cascade; default: the
        model header's ``inference_passes``, else 1). Warnings are kept in the result's ``warnings`` and, with
        ``warn``, also issued with :func:`warnings.warn` (``warn=False`` where several threads register: the
        ``warnings`` module's filters are process-wide)."""
        import torch

        from .spatial import ddf_voxel_to_ras, warp

        self.check_inputs(moving, fixed)
        started = clock = time.perf_counter()
        header = self.model.header
        alignment = alignment or header.get("initial_alignment", "centers")
        stage_s, glands, initial, messages = {}, (), None, []

        def lap(stage: str) -> None:
            nonlocal clock
            stage_s[stage] = time.perf_counter() - clock
            clock = time.perf_counter()

        if self.glands is not None:
            glands = self.glands.segment_pair(moving, fixed)
            lap("segmentation")
        if alignment == "glands":
            from .gland_alignment import glands_initial

            if not glands:
                raise InputError("initial alignment 'glands'", "needs a gland model, and none is loaded")
            initial, found = glands_initial(moving, fixed, *glands, self.gland_transform)
            messages += found
            lap("alignment")
        pair = prepare_pair(
            moving,
            fixed,
            working_spacing_mm=header.get("working_spacing_mm"),
            alignment=alignment,
            normalisation=header.get("intensity_normalisation"),
            initial=initial,
        )
        lap("resampling")
        trained_at = self.network.min_input_shape  # from the header's training_input_shape_kji
        if trained_at and any(n > m for n, m in zip(pair.shape, trained_at)):
            # smaller grids are padded to the training size (networks.py); a larger one is outside what the model
            # saw, and registers poorly (measured on the bundled model: its model card, Limits)
            messages.append(
                f"{fixed.name or 'fixed volume'}: its field of view is {'x'.join(map(str, pair.shape))} voxels at the model's working "
                f"spacing, larger than the {'x'.join(map(str, trained_at))} the model was trained at; the registration may be poor "
                "(retrain or fine-tune on volumes like it)"
            )
        layout = {"device": self.device, "memory_format": torch.channels_last_3d}
        passes = int(passes or header.get("inference_passes", 1))
        with torch.no_grad():
            moving_t = torch.as_tensor(pair.moving_image)[None, None].to(**layout)
            fixed_t = torch.as_tensor(pair.fixed_image)[None, None].to(**layout)
            ddf = mirrored_prediction(self.network, moving_t, fixed_t, self.mirror_axes)
            for _ in range(passes - 1):
                # x -> x + d(x) then the field so far: total(x) = d(x) + ddf(x + d(x))
                warped = warp(moving_t, ddf).contiguous(memory_format=torch.channels_last_3d)
                step = mirrored_prediction(self.network, warped, fixed_t, self.mirror_axes)
                ddf = step + warp(ddf, step)
            ddf = ddf[0].double().cpu()
        lap("network")
        field_ras = np.moveaxis(ddf_voxel_to_ras(ddf, pair.ijk_to_ras).numpy(), 0, -1)  # [K, J, I, 3], working grid
        on_fixed_grid = pair.shape == fixed.shape and np.allclose(pair.ijk_to_ras, fixed.ijk_to_ras)
        if not on_fixed_grid:  # the network ran at the model's working spacing: interpolate the field to the fixed grid
            field_ras = resample_volume(Volume(field_ras, pair.ijk_to_ras), fixed.shape, fixed.ijk_to_ras).array
        displacement = Volume(
            compose_with_initial(field_ras.astype(np.float64), fixed, pair.initial).astype(np.float32),
            fixed.ijk_to_ras.copy(),
            f"{moving.name}_to_{fixed.name}",
        )
        lap("composition")
        quality = None
        if glands:
            from .quality import quality_score

            quality = quality_score(*glands, displacement, self.glands.header.get("quality_dice_threshold"))
            if quality.flagged:
                messages.append(f"{moving.name} -> {fixed.name}: {quality.text()}")
            lap("quality")
        if warn:
            for message in messages:
                warnings.warn(message, stacklevel=2)
        return RegistrationResult(
            displacement,
            pair.initial,
            time.perf_counter() - started,
            str(self.device),
            messages,
            quality,
            glands,
            stage_s,
        )


def load_gland_segmenter(gland_model: str | Path | None | bool, device):
    """The gland segmenter a :class:`Registrar` uses: ``gland_model`` loaded; the bundled one for None when it
    is there (else none); none for False."""
    from .glands import DEFAULT_GLAND_MODEL_NAME, GlandSegmenter
    from .model_file import MODELS_DIR

    if gland_model is False or (gland_model is None and not (MODELS_DIR / DEFAULT_GLAND_MODEL_NAME).is_file()):
        return None
    return GlandSegmenter(gland_model or None, device)


def mirrored_prediction(network, moving, fixed, axes: str = ""):
    """The network's voxel field ``[B, 3, K, J, I]`` (channels i, j, k), averaged with the fields it predicts for
    the pair mirrored along each of ``axes`` (and each combination), each mirrored back: along an axis, the field
    is flipped and its component on that axis negated. Both images share the working grid, so one reflection
    mirrors the pair. The average is exactly equivariant: the mirrored pair gets the mirrored field."""
    from itertools import combinations

    import torch

    from .augmentation import FLIP_DIMS

    dims = [FLIP_DIMS[axis] for axis in axes]
    layout = {"memory_format": torch.channels_last_3d}
    total = 0
    subsets = [list(c) for n in range(len(dims) + 1) for c in combinations(dims, n)]
    for flips in subsets:
        if not flips:
            total = total + network(moving, fixed)
            continue
        field = network(moving.flip(flips).contiguous(**layout), fixed.flip(flips).contiguous(**layout)).flip(flips)
        sign = torch.ones(3, dtype=field.dtype, device=field.device)
        sign[[4 - d for d in flips]] = -1.0  # tensor dimension 4, 3, 2 (i, j, k) -> field channel 0, 1, 2
        total = total + field * sign.view(1, 3, 1, 1, 1)
    return total / len(subsets)


def compose_with_initial(field_ras: np.ndarray, fixed: Volume, initial: np.ndarray) -> np.ndarray:
    """Full displacement ``T(x + u(x)) - x`` on the fixed grid from the network's ``u`` and the initial ``T``."""
    import torch

    from .spatial import grid_points_ras

    points = np.moveaxis(grid_points_ras(fixed.shape, fixed.ijk_to_ras, dtype=torch.float64).numpy(), 0, -1)
    moved = (points + field_ras) @ initial[:3, :3].T + initial[:3, 3]
    return moved - points
