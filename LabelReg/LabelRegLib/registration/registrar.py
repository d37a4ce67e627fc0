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
from math import prod
from pathlib import Path

import numpy as np

from ..core.config import TrainConfig
from ..core.errors import InputError
from ..core.memory import check_registration_memory, gland_bytes, registration_bytes
from ..core.spatial import resample_volume
from ..core.volume import Volume, check_volume, resampled_geometry
from ..data.preprocess import prepare_pair, working_geometry
from ..nets.model_file import LoadedModel, load_model
from ..nets.networks import PAD_MULTIPLE
from .network_field import compose_with_initial, network_field_ras


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
    # with ``uncertainty``: the spread (mm, [K, J, I] on the fixed grid) of every start's and mirrored copy's field
    uncertainty: Volume | None = None
    copies: list = field(default_factory=list, repr=False)  # those fields, until the spread is computed

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
        mirror_axes: str | None = None,
        gland_model: str | Path | None | bool = None,
    ):
        """``mirror_axes``: working-grid axes (letters ``i``, ``j``, ``k``) along which the pair is also registered
        mirrored, the fields averaged (test-time augmentation; see :func:`.network_field.mirrored_prediction`); None: the axes the
        model was trained mirrored along (its header's ``flip_axes``), "" for none. ``gland_model``:
        the gland segmentation model of the ``glands`` alignment and of the quality score (None: the bundled one,
        when it is there; False: none, so no quality score)."""
        import torch

        from ..core.device import select_device
        from ..core.errors import ModelFileError
        from ..nets.networks import RegistrationNet

        if mirror_axes is not None and set(mirror_axes) - set("ijk"):
            raise InputError("--mirror", f"'{mirror_axes}': give working-grid axes among i, j, k")
        self.device = select_device(device)
        self.model: LoadedModel = load_model(model_path, self.device)
        if not isinstance(self.model.network, RegistrationNet):
            raise ModelFileError(self.model.path, "is a gland segmentation model, not a registration model")
        self.network = self.model.network.to(memory_format=torch.channels_last_3d)
        training = self.model.header.get("training", {})
        # a model trained on mirrored pairs registers the mirrored pair as well: averaging both fields helped in
        # cross-validation (the model card); a model trained without mirroring is not mirrored unless asked
        self.mirror_axes = training.get("flip_axes", "") if mirror_axes is None else mirror_axes
        self.glands = load_gland_segmenter(gland_model, self.device)
        # how the glands alignment moves the MR gland: as the model was trained, else the setting's default
        self.gland_transform = training.get("gland_transform", TrainConfig.gland_transform)

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
        glands, name = 0, fixed.name or "fixed volume"
        if self.glands is not None:  # each image on its own segmentation grid: its whole field of view
            grids = {
                volume.name or role: resampled_geometry(volume.shape, volume.ijk_to_ras, self.glands.spacing_mm)[0]
                for volume, role in ((moving, "moving volume"), (fixed, "fixed volume"))
            }
            glands = gland_bytes(list(grids.values()), self.glands.header["architecture"].get("num_channel_initial", 8))
            network, field = registration_bytes(padded_shape, fixed.shape, channels)
            if glands > network + field:  # the segmentation dominates: name the image with the largest grid
                name = max(grids, key=lambda key: prod(grids[key]))
        check_registration_memory(name, padded_shape, fixed.shape, channels, self.device, glands)

    def default_alignment(self) -> str:
        """The initial alignment when none is asked for: ``best`` for a model trained from the centres when a gland
        model is loaded (better held-out medians than the centres alone: the model card), else the model's own."""
        own = self.header.get("initial_alignment", "centers")
        return "best" if own == "centers" and self.glands is not None else own

    def register(
        self,
        moving: Volume,
        fixed: Volume,
        alignment: str | None = None,
        passes: int | None = None,
        warn: bool = True,
        uncertainty: bool = False,
    ) -> RegistrationResult:
        """Register ``moving`` (MR) to ``fixed`` (US). ``alignment``: ``centers``, ``physical``, ``glands`` or
        ``best`` (from the centres and from the glands, keeping the registration whose self-check Dice is higher);
        None or ``auto``: :meth:`default_alignment`. ``passes`` > 1 runs the network again on the moving image warped by
        the previous passes and composes the fields (a cascade; default: the model header's ``inference_passes``,
        else 1). Warnings are kept in the result's ``warnings`` and, with ``warn``, also issued with
        :func:`warnings.warn` (``warn=False`` where several threads register: the ``warnings`` module's filters
        are process-wide). ``uncertainty``: also the spread of the fields of every start and mirrored copy
        (:mod:`.uncertainty`), in the result's ``uncertainty``."""
        self.check_inputs(moving, fixed)
        started = time.perf_counter()
        alignment = self.default_alignment() if alignment in (None, "auto") else alignment
        if alignment in ("glands", "best") and self.glands is None:
            raise InputError(f"initial alignment '{alignment}'", "needs a gland model, and none is loaded")
        timer = StageTimer()
        glands = ()
        if self.glands is not None:
            glands = self.glands.segment_pair(moving, fixed)
            timer.lap("segmentation")
        starts = ("centers", "glands") if alignment == "best" else (alignment,)
        attempts = [self._register_from(start, moving, fixed, glands, passes, timer, uncertainty) for start in starts]
        # the better self-check wins; on a tie the first start (the centres)
        result = max(attempts, key=lambda attempt: attempt.quality.dice if attempt.quality else 0.0)
        if uncertainty:
            from .uncertainty import field_spread_mm

            spread = field_spread_mm([copy for attempt in attempts for copy in attempt.copies])
            result.uncertainty = Volume(spread, fixed.ijk_to_ras.copy(), f"{moving.name}_to_{fixed.name}_spread_mm")
            for attempt in attempts:
                attempt.copies = []
            timer.lap("uncertainty")
        if result.quality is not None and result.quality.flagged:
            result.warnings.append(f"{moving.name} -> {fixed.name}: {result.quality.text()}")
        if warn:
            for message in result.warnings:
                warnings.warn(message, stacklevel=2)
        result.runtime_s, result.stage_s = time.perf_counter() - started, timer.seconds
        return result

    def _register_from(
        self,
        alignment: str,
        moving: Volume,
        fixed: Volume,
        glands: tuple,
        passes: int | None,
        timer: StageTimer,
        copies: bool = False,
    ) -> RegistrationResult:
        """One registration from one initial ``alignment`` (``glands`` given when a gland model ran); its
        quality when there are glands; with ``copies``, each mirrored copy's complete field; runtime and stage
        times are the caller's."""
        header, initial, messages = self.model.header, None, []
        if alignment == "glands":
            from .gland_alignment import glands_initial

            initial, found = glands_initial(moving, fixed, *glands, self.gland_transform)
            messages += found
            timer.lap("alignment")
        pair = prepare_pair(
            moving,
            fixed,
            working_spacing_mm=header.get("working_spacing_mm"),
            alignment=alignment,
            normalisation=header.get("intensity_normalisation"),
            initial=initial,
        )
        timer.lap("resampling")
        trained_at = self.network.min_input_shape  # from the header's training_input_shape_kji
        if trained_at and any(n > m for n, m in zip(pair.shape, trained_at)):
            # smaller grids are padded to the training size (networks.py); a larger one is outside what the model
            # saw, and registers poorly (measured on the bundled model: its model card, Limits)
            messages.append(
                f"{fixed.name or 'fixed volume'}: its field of view is {'x'.join(map(str, pair.shape))} voxels at the model's working "
                f"spacing, larger than the {'x'.join(map(str, trained_at))} the model was trained at; the registration may be poor "
                "(retrain or fine-tune on volumes like it)"
            )
        passes = int(passes or header.get("inference_passes", 1))
        # the field on the working grid (and, for the spread, each mirrored copy's own)
        field_ras, copy_fields = network_field_ras(self.network, pair, self.device, self.mirror_axes, passes, copies)
        timer.lap("network")
        displacement = Volume(
            complete_field(field_ras, pair, fixed), fixed.ijk_to_ras.copy(), f"{moving.name}_to_{fixed.name}"
        )
        timer.lap("composition")
        quality = None
        if glands:
            from .quality import quality_score

            quality = quality_score(*glands, displacement, self.glands.header.get("quality_dice_threshold"))
            timer.lap("quality")
        result = RegistrationResult(displacement, pair.initial, 0.0, str(self.device), messages, quality, glands)
        if copies:
            # a copy that is the field itself (no mirroring, one pass) is not interpolated and composed again
            result.copies = [
                displacement.array if copy is field_ras else complete_field(copy, pair, fixed) for copy in copy_fields
            ]
            timer.lap("uncertainty")
        return result


def complete_field(field_ras: np.ndarray, pair, fixed: Volume) -> np.ndarray:
    """The network's field on the working grid of ``pair`` made the complete displacement on the fixed grid (RAS mm,
    float32): interpolated there when the network ran at another spacing, composed with the initial alignment."""
    on_fixed_grid = pair.shape == fixed.shape and np.allclose(pair.ijk_to_ras, fixed.ijk_to_ras)
    if not on_fixed_grid:
        field_ras = resample_volume(Volume(field_ras, pair.ijk_to_ras), fixed.shape, fixed.ijk_to_ras).array
    return compose_with_initial(field_ras.astype(np.float64), fixed, pair.initial).astype(np.float32)


class StageTimer:
    """Seconds per named stage, summed over repeats (``best`` runs the network from two starts)."""

    def __init__(self):
        self.seconds: dict = {}
        self.clock = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.clock
        self.clock = now


def load_gland_segmenter(gland_model: str | Path | None | bool, device):
    """The gland segmenter a :class:`Registrar` uses: ``gland_model`` loaded; the bundled one for None when it
    is there (else none); none for False."""
    from ..nets.model_file import MODELS_DIR
    from .glands import DEFAULT_GLAND_MODEL_NAME, GlandSegmenter

    if gland_model is False or (gland_model is None and not (MODELS_DIR / DEFAULT_GLAND_MODEL_NAME).is_file()):
        return None
    return GlandSegmenter(gland_model or None, device)
