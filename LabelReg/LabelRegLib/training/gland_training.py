"""Training the gland segmentation network (:mod:`.glands`) on the gland labels of registration data.

Every case gives two samples, its MR and its US with the gland label
(landmark 0), each on its own segmentation grid (its field of view at
``spacing_mm``), zero-padded, centred, into one canvas, so that both modalities
batch together; phantom pairs add synthetic samples. Each step draws half MR,
half US samples, augments each (a random affine and shift, a random gamma, a
random crop of the field of view: a slab at one border blanked in image and
label, as a narrower US sector would) and minimises soft Dice plus binary
cross-entropy.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.config import GlandSettings
from ..core.spatial import affine_warp, random_affine
from ..data.cases import Case
from ..nets.gland_network import MODALITIES, GlandNet
from ..registration.glands import gland_grid_input, pad_centred_array, segmentation_grid


class GlandTrainingData:
    """Every training image on its segmentation grid in one zero-padded canvas: ``images`` and ``labels``
    ``[N, 1, K, J, I]``, ``modalities`` ``[N]`` (0 MR, 1 US)."""

    def __init__(self, cases: list[Case], spacing_mm: float, phantom_pairs: int = 0):
        from ..data.phantom import make_phantom_pair

        phantoms = [make_phantom_pair(seed) for seed in range(phantom_pairs)]
        sources = [(c.moving_image, c.moving_labels[0], "mr") for c in cases]
        sources += [(c.fixed_image, c.fixed_labels[0], "us") for c in cases]
        sources += [(p.moving_image, p.moving_labels[0], "mr") for p in phantoms]
        sources += [(p.fixed_image, p.fixed_labels[0], "us") for p in phantoms]
        images, labels, modalities = [], [], []
        for image, label, modality in sources:
            grid = gland_grid_input(image, spacing_mm)
            images.append(grid.array)
            labels.append(segmentation_grid(label, spacing_mm).array)
            modalities.append(MODALITIES[modality])
        self.canvas_kji = tuple(int(n) for n in np.max([a.shape for a in images], axis=0))
        self.images = torch.as_tensor(np.stack([pad_centred_array(a, self.canvas_kji)[0] for a in images]))[:, None]
        self.labels = torch.as_tensor(np.stack([pad_centred_array(a, self.canvas_kji)[0] for a in labels]))[:, None]
        self.modalities = torch.tensor(modalities)
        self.n_cases = len(cases)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 1 - soft Dice of ``sigmoid(logits)`` and ``target`` (``[B, 1, K, J, I]``)."""
    probability = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    overlap = (probability * target).sum(1)
    return (1 - (2 * overlap + 1) / (probability.sum(1) + target.sum(1) + 1)).mean()


class GlandTrainer:
    """Train a gland segmentation network and write it as a LabelReg model file.

    Args:
        cases: the training cases (their label 0 is the gland).
        output: the model file to write.
        settings: the training settings.
        device: compute device name or ``torch.device``.
        data_source: what the header records as the data (a folder).
        log: where the progress bar and messages go (a function of one line; ``end`` as for ``print``).
        quality_dice_threshold: the quality Dice below which a registration is flagged, recorded in the header
            (chosen by ``labelreg crossval --glands``; None: never flagged).
    """

    def __init__(
        self,
        cases: list[Case],
        output: str | Path,
        settings: GlandSettings | None = None,
        device="auto",
        data_source: str = "",
        log=print,
        quality_dice_threshold: float | None = None,
    ):
        from ..core.device import select_device

        self.settings = (settings or GlandSettings()).validate()
        self.output = Path(output)
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.data_source = data_source
        self.log = log
        self.quality_dice_threshold = quality_dice_threshold
        self.case_names = [case.name for case in cases]
        self.data = GlandTrainingData(cases, self.settings.spacing_mm, self.settings.phantom_pairs)
        torch.manual_seed(self.settings.seed)
        self.network = GlandNet(self.settings.num_channel_initial).to(self.device)
        self.network.min_input_shape = self.data.canvas_kji
        self.generator = torch.Generator().manual_seed(self.settings.seed)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Augmented images, labels and modalities of one step: half MR, half US."""
        s, g, data = self.settings, self.generator, self.data
        half = max(1, s.samples_per_step // 2)
        chosen = []
        for value in MODALITIES.values():
            pool = torch.nonzero(data.modalities == value).flatten()
            chosen.append(pool[torch.randint(len(pool), (half,), generator=g)])
        index = torch.cat(chosen)
        images, labels, n = data.images[index], data.labels[index], len(index)
        theta = random_affine(n, s.corner_scale, g) if s.corner_scale > 0 else torch.eye(3, 4).repeat(n, 1, 1)
        half_extent_mm = s.spacing_mm * (torch.tensor(data.canvas_kji[::-1], dtype=torch.float32) - 1) / 2
        theta[:, :, 3] += (2 * torch.rand(n, 3, generator=g) - 1) * s.shift_mm / half_extent_mm
        both = affine_warp(torch.cat([images, labels], 1), theta)
        images, labels = both[:, :1], both[:, 1:]
        if s.intensity_gamma > 0:
            gammas = torch.exp(s.intensity_gamma * torch.randn(n, generator=g)).view(n, 1, 1, 1, 1)
            images = images.clamp(min=0) ** gammas
        for sample in torch.nonzero(torch.rand(n, generator=g) < s.crop_probability).flatten().tolist():
            dim = 2 + int(torch.randint(3, (1,), generator=g))
            size = images.shape[dim]
            width = int(size * 0.3 * float(torch.rand(1, generator=g)))
            start = 0 if torch.rand(1, generator=g) < 0.5 else size - width
            for tensor in (images, labels):
                tensor[sample].narrow(dim - 1, start, width).zero_()
        return images, labels, data.modalities[index]

    def run(self) -> Path:
        """Train, write the model file; returns its path."""
        from ..nets.model_file import save_model

        s = self.settings
        optimizer = torch.optim.Adam(self.network.parameters(), lr=s.learning_rate)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(0.8 * s.steps)], 0.1)
        started = time.perf_counter()
        self.network.train()
        for step in range(1, s.steps + 1):
            images, labels, modalities = (t.to(self.device) for t in self.batch())
            logits = self.network(images, modalities)
            loss = soft_dice_loss(logits, labels) + F.binary_cross_entropy_with_logits(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step % 10 == 0 or step == s.steps:
                elapsed = time.perf_counter() - started
                bar = "#" * int(30 * step / s.steps)
                self.log(
                    f"\r[{bar:<30}] step {step}/{s.steps}  loss {float(loss.detach()):.4f}  "
                    f"ETA {elapsed / step * (s.steps - step):.0f}s",
                    end="\n" if step == s.steps else "",
                )
        save_model(self.output, self.network.eval(), self.header(time.perf_counter() - started))
        return self.output

    def header(self, wall_s: float) -> dict:
        from .. import __version__
        from ..core.config import GLAND_NETWORK_TYPE
        from ..data.preprocess import DEFAULT_NORMALISATION

        return {
            "architecture": {
                "network_type": GLAND_NETWORK_TYPE,
                "num_channel_initial": self.settings.num_channel_initial,
                "norm": "instance",
            },
            "working_spacing_mm": self.settings.spacing_mm,
            "training_input_shape_kji": list(self.data.canvas_kji),
            "intensity_normalisation": DEFAULT_NORMALISATION,
            "training": {
                **asdict(self.settings),
                "data": self.data_source,
                "n_cases": self.data.n_cases,
                "cases": self.case_names,
                "wall_time_s": round(wall_s, 1),
                "device": str(self.device),
            },
            **({"quality_dice_threshold": self.quality_dice_threshold} if self.quality_dice_threshold else {}),
            "labelreg_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
