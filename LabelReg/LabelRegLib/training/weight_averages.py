"""Averages of the network's weights that validation and the saved model use instead of the last step's.

``ema_decay`` keeps an exponential moving average updated every step;
``swa_start`` / ``swa_every`` keep a stochastic weight average (Izmailov et al.
2018): the equal-weight mean of snapshots of the network (of its moving average
when that is on) taken every ``swa_every`` steps from ``swa_start`` on. Both are
``torch.optim.swa_utils.AveragedModel`` objects and are saved in checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..core.config import TrainConfig
from ..core.errors import ModelFileError


class WeightAverages:
    """The moving average and the stochastic weight average of ``network`` that a config switches on."""

    def __init__(self, network: torch.nn.Module, config: TrainConfig):
        self.swa_start, self.swa_every = config.swa_start, config.swa_every
        self.ema = (
            AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
            if config.ema_decay > 0
            else None
        )
        # equal weights: the mean of its snapshots
        self.swa = AveragedModel(network, use_buffers=True) if config.swa_start > 0 else None

    def smoothed(self, network: torch.nn.Module) -> torch.nn.Module:
        """``network`` with the moving average of its weights if ``ema_decay`` is on."""
        return self.ema.module if self.ema is not None else network

    def inference(self, network: torch.nn.Module) -> torch.nn.Module:
        """The network that is validated and saved: the stochastic weight average once it holds a snapshot, else
        :meth:`smoothed`."""
        if self.swa is not None and int(self.swa.n_averaged) > 0:
            return self.swa.module
        return self.smoothed(network)

    @property
    def swa_snapshots(self) -> int:
        return int(self.swa.n_averaged) if self.swa is not None else 0

    def update(self, step: int, network: torch.nn.Module) -> None:
        """After the optimiser's update of the 0-based ``step``."""
        if self.ema is not None:
            self.ema.update_parameters(network)
        if self.swa is not None and step + 1 >= self.swa_start and (step + 1 - self.swa_start) % self.swa_every == 0:
            self.swa.update_parameters(self.smoothed(network))

    def state_dict(self) -> dict:
        return {
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "swa": self.swa.state_dict() if self.swa is not None else {},
        }

    def load_state_dict(self, state: dict, path: Path) -> None:
        """From a checkpoint ``state`` (read from ``path``, named in errors)."""
        for name, average, setting in (
            (("ema", self.ema, "a weight average but ema_decay is set")),
            (("swa", self.swa, "a stochastic weight average but swa_start is set")),
        ):
            if average is None:
                continue
            if not state.get(name):
                raise ModelFileError(path, f"cannot resume: the checkpoint has no {setting}")
            average.load_state_dict(state[name])
