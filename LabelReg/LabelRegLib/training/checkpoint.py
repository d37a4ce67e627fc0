"""Training checkpoints: everything a training needs to continue exactly where it stopped.

One ``torch.save`` file, ``<output_dir>/checkpoint.pt``, written atomically (a
killed process leaves the previous checkpoint intact), read only with
``weights_only=True``: the network, the optimiser, the weight averages, the
segmentation head, the random generator, the epoch order, the elapsed time and
the curves so far, and the architecture (a resume with another one is refused).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..core.errors import ModelFileError
from ..core.writes import atomic_output
from ..nets.model_file import load_weights_only

CHECKPOINT_FORMAT = "labelreg-checkpoint"


def write_checkpoint(path: Path, architecture: dict, state: dict) -> None:
    """Write ``state`` (tensors, plain containers; ``history`` as a list of dicts) atomically."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        **state,
        "history": json.dumps(state["history"]),
        "architecture": json.dumps(architecture),
    }
    with atomic_output(path, lambda temporary: _verify_checkpoint(temporary, payload)) as temporary:
        torch.save(payload, temporary)


def _verify_checkpoint(path: Path, payload: dict) -> None:
    """A checkpoint just written, read back before it replaces the last good one."""
    from ..core.writes import ShortWrite

    try:
        written = load_weights_only(path, "training checkpoint")
    except ModelFileError as error:
        raise ShortWrite(f"it cannot be read back ({error.problem})") from None
    if not isinstance(written, dict) or set(written) != set(payload) or written.get("step") != payload.get("step"):
        raise ShortWrite("what was read back differs from what was written")


def read_checkpoint(path: Path, architecture: dict) -> dict:
    """The state saved by :func:`write_checkpoint`, checked to be a LabelReg checkpoint of ``architecture``."""
    state = load_weights_only(Path(path), "training checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(path, "is not a LabelReg training checkpoint")
    if json.loads(state["architecture"]) != architecture:
        raise ModelFileError(
            path,
            f"was trained with another architecture {state['architecture']}; resume needs the same network settings",
        )
    return {**state, "history": json.loads(state["history"])}


def training_state(trainer) -> dict:
    """What :func:`write_checkpoint` saves of a :class:`~LabelRegLib.training.trainer.Trainer`: everything its next step
    depends on (network, optimiser, weight averages, segmentation head, random generator, epoch order) and the
    curves so far."""
    from .distributed import Distributed

    segmenter = trainer.segmenter
    return {
        "step": trainer.step,
        "model": trainer.network.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        **trainer.averages.state_dict(),
        "segmenter": Distributed.unwrap(segmenter).state_dict() if segmenter is not None else {},
        "generator": trainer.generator.get_state(),
        "order": list(trainer.sampler.order),
        "elapsed_s": trainer.elapsed_s,
        "history": trainer.progress.history,
    }


def restore_training_state(trainer, state: dict, path: Path) -> None:
    """Put a state read by :func:`read_checkpoint` back into ``trainer`` (the inverse of :func:`training_state`)."""
    from .distributed import Distributed

    trainer.network.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.averages.load_state_dict(state, path)
    if trainer.segmenter is not None:
        if not state.get("segmenter"):
            raise ModelFileError(
                path, "cannot resume: the checkpoint has no segmentation head but segmentation_weight is set"
            )
        Distributed.unwrap(trainer.segmenter).load_state_dict(state["segmenter"])
    trainer.generator.set_state(state["generator"])
    trainer.sampler.order = list(state["order"])
    trainer.progress.history = state["history"]
    trainer.step, trainer.elapsed_s = int(state["step"]), float(state["elapsed_s"])
