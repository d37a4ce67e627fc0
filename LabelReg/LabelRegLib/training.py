"""Training loop of label-reg: weakly-supervised by warping labels, with validation, checkpoints and resume.

One step (as the original): shuffle the training pairs every epoch, take a
minibatch of pairs, pick one landmark per pair uniformly (two-stage sampling;
``label_sampling = "all"`` uses every landmark instead), apply independent
random affine augmentation to the moving and the fixed side (image and labels
alike), predict the DDF, warp the moving labels, and minimise the multi-scale
label dissimilarity plus the weighted regulariser with Adam.

LabelReg's additions, each off by default: random shifts of the moving side
(``translation_mm``, so that a network cannot learn each training pair's
offset by heart but must find the gland in both images) and of the fixed side
(``fixed_translation_mm``, so that it cannot rely on where the gland usually
lies in the fixed field of view either), mirroring whole pairs along chosen
working-grid axes (``flip_axes``; a mirrored pair is still a consistent
registration problem because both images and all labels are mirrored on the
same working grid), random gamma of each image (``intensity_gamma``), starting
from a model file (``initial_model``, for fine-tuning), an exponential moving
average of the weights (``ema_decay``) that validation and the saved model use,
a stochastic weight average (``swa_start``, ``swa_every``: the equal-weight mean
of snapshots of the network, or of its moving average, taken every few hundred
steps; Izmailov et al. 2018) that then replaces it, and a training-only gland
segmentation task (``segmentation_weight``, see :mod:`LabelRegLib.segmentation_head`).

All randomness comes from one ``torch.Generator`` saved in every checkpoint,
so ``resume`` continues exactly where the last checkpoint stopped. Under
``torchrun`` each rank trains on its own share of each global minibatch with
DistributedDataParallel (nccl on GPUs, gloo on CPUs); only rank 0 writes.
"""

from __future__ import annotations

import csv
import io as _io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import __version__
from .config import TrainConfig, training_record, write_ini
from .data import Case, load_data_folder
from .device import select_device
from .errors import ModelFileError
from .io import atomic_output
from .losses import multi_scale_loss, regulariser
from .metrics import dice, tre_mm
from .model_file import model_settings_flags, read_model_payload, save_model
from .networks import build_network
from .outputs import RunFolder
from .preprocess import DEFAULT_NORMALISATION, WorkingPair, prepare_pair
from .segmentation_head import GlandSegmentationHead, segmentation_loss
from .spatial import affine_warp, folding_fraction, random_affine, warp
from .volume import Volume

CHECKPOINT_NAME = "checkpoint.pt"
FLIP_DIMS = {"i": 4, "j": 3, "k": 2}  # working-grid axis -> dimension of a [B, C, K, J, I] tensor
CHECKPOINT_FORMAT = "labelreg-checkpoint"


def split_cases(n_cases: int, validation_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic train / validation split of case indices (at least one training case)."""
    order = np.random.default_rng(seed).permutation(n_cases).tolist()
    n_val = int(round(validation_fraction * n_cases)) if validation_fraction > 0 and n_cases > 1 else 0
    n_val = min(max(n_val, 1 if validation_fraction > 0 and n_cases > 1 else 0), n_cases - 1)
    return sorted(order[n_val:]), sorted(order[:n_val])


def architecture_of(config: TrainConfig) -> dict:
    architecture = {"network_type": config.network_type, "num_channel_initial": config.num_channel_initial, "norm": config.norm}
    if config.network_type != "global":
        architecture["ddf_levels"] = list(config.ddf_levels)
    return architecture


def _pad_to(array: np.ndarray, shape) -> np.ndarray:
    return np.pad(array, [(0, n - s) for s, n in zip(array.shape, shape)])


class Distributed:
    """Rank and world size under torchrun (environment variables), or a single process."""

    def __init__(self, device: torch.device):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.enabled = self.world_size > 1
        if self.enabled and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in DistributedDataParallel when several processes train (gradients averaged), else itself."""
        return torch.nn.parallel.DistributedDataParallel(module) if self.enabled else module

    @staticmethod
    def unwrap(module: torch.nn.Module) -> torch.nn.Module:
        """``module`` without its DistributedDataParallel wrapper."""
        return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module

    def close(self):
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class Trainer:
    """Train a registration network from a :class:`TrainConfig`; ``run()`` returns the model file path."""

    def __init__(self, config: TrainConfig, progress_json: bool = False, cases: list[Case] | None = None, stream=None, overwrite: bool = False):
        self.config = config.validate()
        self.overwrite = overwrite  # start again over a run folder that holds a training
        self.progress_json = progress_json
        self.stream = stream or sys.stdout
        self.output_dir = Path(config.output_dir).expanduser()
        self.device = select_device(config.device)
        if self.device.type == "cuda" and "LOCAL_RANK" in os.environ:
            self.device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        self.dist = Distributed(self.device)
        if config.deterministic:
            torch.use_deterministic_algorithms(True)
        self._cases = cases
        self.ema = None
        self.swa = None
        self.segmenter = None
        self.initial_model_header: dict = {}
        self.history: list[dict] = []
        self.written: list[str] = []  # files this process wrote (only rank 0 writes)

    # ------------------------------------------------------------ data
    def _load_data(self):
        c = self.config
        cases = self._cases
        if cases is None:
            cases = load_data_folder(
                c.data_dir or None,
                moving_images=c.dir_moving_image or None,
                fixed_images=c.dir_fixed_image or None,
                moving_labels=c.dir_moving_label or None,
                fixed_labels=c.dir_fixed_label or None,
            )
        self.train_idx, self.val_idx = split_cases(len(cases), c.validation_fraction, c.seed)
        if c.phantom_pairs:
            from .phantom import make_phantom_pair

            phantoms = [make_phantom_pair(seed) for seed in range(c.phantom_pairs)]
            self.train_idx += list(range(len(cases), len(cases) + len(phantoms)))
            cases = list(cases) + [Case(p.name, p.moving_image, p.fixed_image, p.moving_labels, p.fixed_labels) for p in phantoms]
        self.cases = cases
        self.pairs: list[WorkingPair] = [
            prepare_pair(case.moving_image, case.fixed_image, case.moving_labels, case.fixed_labels, c.working_spacing or None, c.initial_alignment)
            for case in cases
        ]
        shape = tuple(int(n) for n in np.max([p.shape for p in (self.pairs[i] for i in self.train_idx)], axis=0))
        self.train_shape = shape
        # training tensors, zero-padded to one shape so that pairs of different sizes batch together
        self.train_images = {
            i: torch.as_tensor(np.stack([_pad_to(self.pairs[i].moving_image, shape), _pad_to(self.pairs[i].fixed_image, shape)]))
            for i in self.train_idx
        }
        self.train_labels = {
            i: (
                torch.as_tensor(np.stack([_pad_to(a, shape) for a in self.pairs[i].moving_labels])),
                torch.as_tensor(np.stack([_pad_to(a, shape) for a in self.pairs[i].fixed_labels])),
            )
            for i in self.train_idx
        }

    # ------------------------------------------------------------ sampling
    def _global_batch(self, step: int, generator: torch.Generator) -> list[tuple[int, list[int]]]:
        """Case and landmark indices of the whole (all-rank) minibatch of ``step``; advances the epoch order."""
        per_step = self.config.minibatch_size * self.dist.world_size
        batches_per_epoch = max(1, len(self.train_idx) // per_step)
        position = step % batches_per_epoch
        if position == 0 or not self.order:
            permutation = torch.randperm(len(self.train_idx), generator=generator).tolist()
            self.order = [self.train_idx[p] for p in permutation]
        chosen = [self.order[(position * per_step + n) % len(self.order)] for n in range(per_step)]
        batch = []
        for case_index in chosen:
            n_labels = len(self.pairs[case_index].moving_labels)
            if self.config.label_sampling == "all":
                batch.append((case_index, list(range(n_labels))))
            else:
                batch.append((case_index, [int(torch.randint(n_labels, (1,), generator=generator))]))
        return batch

    def _augmentation(self, case_indices: list[int], generator: torch.Generator) -> list[dict]:
        """Random augmentation parameters of the pairs ``case_indices`` (drawn only for the options that are on)."""
        c = self.config
        n_pairs = len(case_indices)
        thetas = random_affine(2 * n_pairs, c.corner_scale, generator) if c.corner_scale > 0 else None
        flip_dims = [FLIP_DIMS[axis] for axis in c.flip_axes]
        flips = torch.rand(n_pairs, len(flip_dims), generator=generator) < 0.5 if flip_dims else None
        gammas = torch.exp(c.intensity_gamma * torch.randn(2 * n_pairs, generator=generator)) if c.intensity_gamma > 0 else None
        # random shifts, uniform in +-V mm per axis: of the moving side (translation_mm), then of the fixed side
        # (fixed_translation_mm: the US and its labels move in their field of view)
        ranges_mm = (c.translation_mm, c.fixed_translation_mm)
        if any(range_mm > 0 for range_mm in ranges_mm):
            if thetas is None:
                thetas = torch.eye(3, 4).repeat(2 * n_pairs, 1, 1)
            units_mm = torch.stack([self._normalised_unit_mm(case) for case in case_indices])  # mm per normalised unit, (i, j, k)
            for side, range_mm in enumerate(ranges_mm):
                if range_mm > 0:
                    shifts = (2 * torch.rand(n_pairs, 3, generator=generator, dtype=torch.float64) - 1) * range_mm
                    thetas[side::2, :, 3] += (shifts / units_mm).float()
        return [
            {
                "thetas": None if thetas is None else (thetas[2 * n], thetas[2 * n + 1]),
                "flip_dims": [d for d, chosen in zip(flip_dims, flips[n]) if chosen] if flips is not None else [],
                "gammas": None if gammas is None else (float(gammas[2 * n]), float(gammas[2 * n + 1])),
            }
            for n in range(n_pairs)
        ]

    def _normalised_unit_mm(self, case_index: int) -> torch.Tensor:
        """Millimetres per unit of the normalised [-1, 1] coordinates (i, j, k) of a pair's training tensors."""
        spacing = np.linalg.norm(self.pairs[case_index].ijk_to_ras[:3, :3], axis=0)  # voxel size along i, j, k
        half_size = (np.array(self.train_shape[::-1]) - 1) / 2
        return torch.as_tensor(spacing * half_size)

    def _augmented_sample(self, case_index: int, landmarks: list[int], augmentation: dict):
        """Augmented ``[1, 1 + L, K, J, I]`` moving and fixed tensors: the image, then the chosen labels
        (and, with the segmentation task on, the gland label once more at the end)."""
        images = self.train_images[case_index]
        moving_labels, fixed_labels = self.train_labels[case_index]
        moving_image, fixed_image = images[:1], images[1:]
        if augmentation["gammas"]:
            moving_image, fixed_image = moving_image ** augmentation["gammas"][0], fixed_image ** augmentation["gammas"][1]
        if self.segmenter is not None:  # the gland labels last, as the segmentation targets
            landmarks = [*landmarks, 0]
        moving = torch.cat([moving_image, moving_labels[landmarks]])[None]
        fixed = torch.cat([fixed_image, fixed_labels[landmarks]])[None]
        if augmentation["flip_dims"]:
            moving, fixed = moving.flip(augmentation["flip_dims"]), fixed.flip(augmentation["flip_dims"])
        if augmentation["thetas"] is not None:
            moving = affine_warp(moving, augmentation["thetas"][0][None])
            fixed = affine_warp(fixed, augmentation["thetas"][1][None])
        return moving, fixed

    # ------------------------------------------------------------ one step
    def _train_step(self, step: int, generator: torch.Generator) -> dict:
        c = self.config
        batch = self._global_batch(step, generator)
        augmentations = self._augmentation([case for case, _ in batch], generator)
        mine = slice(self.dist.rank * c.minibatch_size, (self.dist.rank + 1) * c.minibatch_size)
        samples = [self._augmented_sample(ci, lm, a) for (ci, lm), a in zip(batch, augmentations)][mine]
        self.seen_cases.extend(ci for ci, _ in batch[mine])
        moving = torch.cat([m[:, :1] for m, _ in samples]).to(self.device).contiguous(memory_format=torch.channels_last_3d)
        fixed = torch.cat([f[:, :1] for _, f in samples]).to(self.device).contiguous(memory_format=torch.channels_last_3d)
        self.model.train()
        ddf = self.model(moving, fixed)
        labels_end = -1 if self.segmenter is not None else None
        similarity = 0
        for n, (m, f) in enumerate(samples):
            moving_labels = m[:, 1:labels_end].transpose(0, 1).to(self.device)  # [L, 1, K, J, I]
            fixed_labels = f[:, 1:labels_end].transpose(0, 1).to(self.device)
            warped = warp(moving_labels, ddf[n : n + 1].expand(len(moving_labels), -1, -1, -1, -1))
            similarity = similarity + multi_scale_loss(fixed_labels, warped, c.similarity_type, c.similarity_scales)
        similarity = similarity / len(samples)
        energy = regulariser(ddf, c.regulariser_type) if c.network_type != "global" and c.regulariser_weight else torch.zeros((), device=self.device)
        loss = similarity + c.regulariser_weight * energy
        segmentation = torch.zeros((), device=self.device)
        if self.segmenter is not None:
            glands = torch.cat([torch.cat([m[:, -1:], f[:, -1:]], dim=1) for m, f in samples]).to(self.device)
            segmentation = segmentation_loss(self.segmenter(moving.shape[2:]), glands)
            loss = loss + c.segmentation_weight * segmentation
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in self.optimizer.param_groups:  # a function of the step alone, so a resumed run follows the same schedule
            group["lr"] = self.learning_rate(step)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self._bare_model())
        if self.swa is not None and step + 1 >= c.swa_start and (step + 1 - c.swa_start) % c.swa_every == 0:
            self.swa.update_parameters(self._smoothed_model())
        record = {"loss": float(loss.detach()), "similarity": float(similarity.detach()), "regulariser": float(energy.detach())}
        if self.segmenter is not None:
            record["segmentation"] = float(segmentation.detach())
        return record

    def learning_rate(self, step: int) -> float:
        """The learning rate of the 0-based training ``step``: ``learning_rate``, times ``learning_rate_decay``
        for every milestone already passed."""
        c = self.config
        return c.learning_rate * c.learning_rate_decay ** sum(step >= milestone for milestone in c.learning_rate_milestones)

    # ------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict:
        """Median gland Dice, median landmark TRE (mm) and max folding over the validation pairs (working grid)."""
        if not self.val_idx:
            return {}
        network = self._inference_model()
        network.eval()
        dices, tres, foldings = [], [], []
        for i in self.val_idx:
            pair = self.pairs[i]
            moving = torch.as_tensor(pair.moving_image)[None, None].to(self.device)
            fixed = torch.as_tensor(pair.fixed_image)[None, None].to(self.device)
            ddf = network(moving, fixed)
            labels = torch.as_tensor(np.stack(pair.moving_labels))[:, None].to(self.device)
            warped = warp(labels, ddf.expand(len(labels), -1, -1, -1, -1)).cpu().numpy()[:, 0]
            dices.append(dice(warped[0], pair.fixed_labels[0]))
            landmarks = range(1, len(warped)) if len(warped) > 1 else [0]
            tres += [tre_mm(Volume(warped[n], pair.ijk_to_ras), Volume(pair.fixed_labels[n], pair.ijk_to_ras)) for n in landmarks]
            foldings.append(folding_fraction(ddf.double()))
        finite_tres = [t for t in tres if np.isfinite(t)]  # a label warped out of view has no centroid
        return {"val_dice": float(np.median(dices)), "val_tre_mm": float(np.median(finite_tres)) if finite_tres else float("nan"), "val_folding": float(np.max(foldings))}

    # ------------------------------------------------------------ state
    def _bare_model(self):
        return Distributed.unwrap(self.model)

    def _smoothed_model(self):
        """The network with the moving average of its weights if ``ema_decay`` is on."""
        return self.ema.module if self.ema is not None else self._bare_model()

    def _inference_model(self):
        """The network that is validated and saved: the stochastic weight average once it holds a snapshot,
        else :meth:`_smoothed_model`."""
        if self.swa is not None and int(self.swa.n_averaged) > 0:
            return self.swa.module
        return self._smoothed_model()

    def _checkpoint_path(self) -> Path:
        return self.output_dir / CHECKPOINT_NAME

    def _save_checkpoint(self, step: int, generator: torch.Generator, elapsed: float):
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "model": self._bare_model().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "swa": self.swa.state_dict() if self.swa is not None else {},
            "segmenter": Distributed.unwrap(self.segmenter).state_dict() if self.segmenter is not None else {},
            "generator": generator.get_state(),
            "order": list(self.order),
            "elapsed_s": elapsed,
            "history": json.dumps(self.history),
            "architecture": json.dumps(architecture_of(self.config)),
        }
        with atomic_output(self._checkpoint_path()) as temporary:
            torch.save(state, temporary)
        self._note_written(self._checkpoint_path())

    def _load_checkpoint(self, generator: torch.Generator) -> tuple[int, float]:
        path = self._checkpoint_path()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ModelFileError(path, f"cannot resume: the checkpoint cannot be read ({str(error).splitlines()[0]})") from error
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ModelFileError(path, "is not a LabelReg training checkpoint")
        if json.loads(state["architecture"]) != architecture_of(self.config):
            raise ModelFileError(path, f"was trained with another architecture {state['architecture']}; resume needs the same network settings")
        self._bare_model().load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if not state.get("ema"):
                raise ModelFileError(path, "cannot resume: the checkpoint has no weight average but ema_decay is set")
            self.ema.load_state_dict(state["ema"])
        if self.swa is not None:
            if not state.get("swa"):
                raise ModelFileError(path, "cannot resume: the checkpoint has no stochastic weight average but swa_start is set")
            self.swa.load_state_dict(state["swa"])
        if self.segmenter is not None:
            if not state.get("segmenter"):
                raise ModelFileError(path, "cannot resume: the checkpoint has no segmentation head but segmentation_weight is set")
            Distributed.unwrap(self.segmenter).load_state_dict(state["segmenter"])
        generator.set_state(state["generator"])
        self.order = list(state["order"])
        self.history = json.loads(state["history"])
        return int(state["step"]), float(state["elapsed_s"])

    def _load_initial_weights(self, network) -> None:
        """Start from the weights of ``initial_model`` (a LabelReg model file of the same architecture)."""
        path = Path(self.config.initial_model).expanduser()
        header, state = read_model_payload(path)
        self.initial_model_header = header
        if header.get("architecture") != architecture_of(self.config):
            raise ModelFileError(path, f"has architecture {header.get('architecture')}, but the training settings ask for {architecture_of(self.config)}; "
                                       f"train with the model's settings ({' '.join(model_settings_flags(header))})")
        network.load_state_dict(state)  # float16 weights are copied into the float32 parameters

    # ------------------------------------------------------------ output
    def _emit(self, record: dict):
        if not self.dist.is_main:
            return
        if self.progress_json:
            print(json.dumps(record), file=self.stream, flush=True)
        elif record["event"] == "step":
            eta = record["eta_s"]
            bar = "#" * int(30 * record["step"] / record["total"])
            print(
                f"\r[{bar:<30}] step {record['step']}/{record['total']}  loss {record['loss']:.4f}  "
                f"(similarity {record['similarity']:.4f}, regulariser {record['regulariser']:.5f})  ETA {eta:.0f}s",
                end="\n" if record["step"] == record["total"] else "",
                file=sys.stderr,
                flush=True,
            )
        elif record["event"] in ("validation", "done", "start"):
            print("\n" + json.dumps(record), file=sys.stderr, flush=True)

    def _write_metrics(self):
        columns = ["step", "loss", "similarity", "regulariser", "val_dice", "val_tre_mm", "val_folding", "elapsed_s"]
        if self.segmenter is not None:
            columns.insert(4, "segmentation")
        buffer = _io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.history)
        with atomic_output(self.output_dir / "metrics.csv") as temporary:
            temporary.write_text(buffer.getvalue())
        plot_curves(self.history, self.output_dir / "curves.png")
        self._note_written(self.output_dir / "metrics.csv", self.output_dir / "curves.png")

    def _note_written(self, *paths: Path):
        self.written += [str(p) for p in paths if str(p) not in self.written]

    def _model_header(self, step: int, elapsed: float, validation: dict) -> dict:
        c = self.config
        return {
            "architecture": architecture_of(c),
            "working_spacing_mm": c.working_spacing or None,
            # the working-grid size of the training tensors: inference pads smaller inputs to it
            "training_input_shape_kji": list(self.train_shape),
            "intensity_normalisation": DEFAULT_NORMALISATION,
            "initial_alignment": c.initial_alignment,
            "training": {
                **training_record(c),  # every setting that shapes the model (config.py's schema)
                "data": c.data_dir or c.dir_moving_image,
                "n_train_pairs": len(self.train_idx),
                "n_validation_pairs": len(self.val_idx),
                "validation_cases": [self.cases[i].name for i in self.val_idx],
                "steps": step,
                "wall_time_s": round(elapsed, 1),
                # how the starting model was trained (and, nested, its own starting model): the full recipe
                "initial_model_training": self.initial_model_header.get("training"),
                "swa_snapshots": int(self.swa.n_averaged) if self.swa is not None else 0,
                "device": str(self.device),
            },
            "validation": validation,
            "labelreg_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    # ------------------------------------------------------------ main loop
    def run(self, resume: bool = False) -> Path:
        """Train (or, with ``resume``, continue the run folder's training); returns the model file. The run folder
        is checked and held for this training alone first (:class:`~LabelRegLib.outputs.RunFolder`)."""
        c = self.config
        if not self.dist.is_main:
            return self._run(resume)
        with RunFolder(self.output_dir, c.model_path(), resume, self.overwrite, c, {"--initial_model": c.initial_model or None}):
            return self._run(resume)

    def _run(self, resume: bool) -> Path:
        c = self.config
        torch.manual_seed(c.seed)
        self._load_data()
        # channels-last 3D memory layout: about 30 % faster convolutions on the CPU, same results
        network = build_network(**architecture_of(c))
        network.min_input_shape = self.train_shape  # validation pads smaller pairs to it, as inference will
        if c.initial_model:
            self._load_initial_weights(network)
        network = network.to(self.device, memory_format=torch.channels_last_3d)
        self.model = self.dist.wrap(network)
        # the weight average is copied from the network before the segmentation head hooks into it
        self.ema = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(c.ema_decay), use_buffers=True) if c.ema_decay > 0 else None
        self.swa = AveragedModel(network, use_buffers=True) if c.swa_start > 0 else None  # equal weights: the running mean of its snapshots
        parameters = list(network.parameters())
        if c.segmentation_weight > 0:
            head = GlandSegmentationHead(network).to(self.device)
            self.segmenter = self.dist.wrap(head)
            parameters += list(head.parameters())
        self.optimizer = torch.optim.Adam(parameters, lr=c.learning_rate)
        generator = torch.Generator().manual_seed(c.seed)
        self.order, self.seen_cases = [], []
        step, elapsed = 0, 0.0
        if resume:
            step, elapsed = self._load_checkpoint(generator)
        if self.dist.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_ini(c, self.output_dir / "config.ini")
            self._note_written(self.output_dir / "config.ini")
        self._emit({"event": "start", "step": step, "total": c.total_iterations, "n_train": len(self.train_idx), "n_val": len(self.val_idx), "device": str(self.device), "world_size": self.dist.world_size})
        started = time.monotonic() - elapsed
        first_step = step
        validation = {}
        if step == 0 and self.val_idx:  # where training starts from, for the curves
            initial = self.validate()
            self.history.append({"step": 0, "loss": float("nan"), "similarity": float("nan"), "regulariser": float("nan"), **initial, "elapsed_s": 0.0})
            self._emit({"event": "validation", "step": 0, **initial})
        while step < c.total_iterations:
            step += 1
            record = {"step": step, **self._train_step(step - 1, generator)}
            now = time.monotonic() - started
            rate = (now - elapsed) / max(1, step - first_step)
            record.update(elapsed_s=round(now, 2), eta_s=round(rate * (c.total_iterations - step), 1))
            if step % c.freq_validation == 0 or step == c.total_iterations:
                validation = self.validate()
                record.update(validation)
                if validation:
                    self._emit({"event": "validation", "step": step, **validation})
            if step % c.freq_info_print == 0 or step == c.total_iterations or validation.keys() & record.keys():
                self.history.append({k: record[k] for k in record if k != "eta_s"})
                self._emit({"event": "step", "total": c.total_iterations, **record})
            if self.dist.is_main and (step % c.freq_model_save == 0 or step == c.total_iterations):
                self._save_checkpoint(step, generator, now)
                self._write_metrics()
                self._emit({"event": "checkpoint", "step": step, "path": str(self._checkpoint_path())})
        elapsed = time.monotonic() - started
        model_path = c.model_path()
        if self.dist.is_main:
            if not validation and self.val_idx:
                validation = self.validate()
            save_model(model_path, self._inference_model(), self._model_header(step, elapsed, validation), half_precision=c.model_float16)
            self._note_written(model_path)
            self._write_metrics()
        self._emit({"event": "done", "step": step, "model": str(model_path), "wall_time_s": round(elapsed, 1), **validation})
        if self.progress_json:  # which training pairs this rank trained on (every rank reports, on stderr)
            names = [self.cases[i].name for i in self.seen_cases]
            print(json.dumps({"event": "samples", "rank": self.dist.rank, "cases": names, "wrote": self.written}), file=sys.stderr, flush=True)
        self.dist.close()
        return model_path


def plot_curves(history: list[dict], path: Path) -> None:
    """PNG of the training loss and the validation Dice / TRE against the step (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    steps = [h["step"] for h in history]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(steps, [h["loss"] for h in history], label="loss")
    axes[0].plot(steps, [h["similarity"] for h in history], label="label dissimilarity")
    axes[0].set(xlabel="step", title="training loss")
    axes[0].legend()
    validated = [h for h in history if "val_dice" in h]
    axes[1].plot([h["step"] for h in validated], [h["val_dice"] for h in validated], "o-")
    axes[1].set(xlabel="step", title="validation gland Dice (median)", ylim=(0, 1))
    axes[2].plot([h["step"] for h in validated], [h["val_tre_mm"] for h in validated], "o-", color="tab:red")
    axes[2].set(xlabel="step", title="validation landmark TRE (mm, median)")
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=80)
    plt.close(figure)

