"""Training on several processes with torchrun: rank, world size and the DistributedDataParallel wrapper."""

from __future__ import annotations

import os

import torch


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
