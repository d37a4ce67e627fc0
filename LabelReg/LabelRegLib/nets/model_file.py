"""The model file: network weights plus a JSON header, loadable without running code.

Layout (one ``torch.save`` file, docs/design.md, "Conventions")::

    {"format": "labelreg-model", "format_version": 2,
     "header": "<JSON text>", "state_dict": {name: tensor}}

It is read with ``torch.load(weights_only=True)``, which only rebuilds
tensors and plain containers and refuses any other pickled object, so a model
file from a stranger cannot execute code. The header records the
architecture, the preprocessing the network expects, what it was trained on
and its validation metrics, and a SHA-256 over the rest of the header and the
weights (``model_sha256``), so that a file modified or damaged anywhere is
rejected: a header changed by one byte (a working spacing, say) would otherwise
run with the wrong preprocessing and give a wrong transform without a word.
:func:`peek_model_header` reads the header with the standard library alone
(no torch, no checksum), for listing models in a panel without loading
anything heavy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ModelFileError
from ..core.writes import atomic_output

FORMAT = "labelreg-model"
FORMAT_VERSION = 2  # 2: the checksum covers the header as well as the weights (1 covered the weights only)
CHECKSUM_KEY = "model_sha256"
DEFAULT_MODEL_NAME = "labelreg_localnet.pt"


def _models_dir() -> Path:
    """The bundled models and their recipes: ``Resources/Models`` beside this package in a checkout and in the
    Slicer extension (the module's resources); in an installed wheel, the package data ``LabelRegLib/Models``."""
    beside = Path(__file__).resolve().parents[2] / "Resources" / "Models"  # LabelRegLib/nets/model_file.py
    if beside.is_dir():
        return beside
    from importlib.resources import files

    return Path(str(files("LabelRegLib") / "Models"))


MODELS_DIR = _models_dir()


def default_model_path() -> Path:
    """The model bundled with LabelReg (in :data:`MODELS_DIR`)."""
    return MODELS_DIR / DEFAULT_MODEL_NAME


def weights_checksum(state_dict: dict) -> str:
    """SHA-256 over parameter names, dtypes, shapes and bytes, in name order."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_checksum(header: dict, state_dict: dict) -> str:
    """SHA-256 over the header (its JSON with sorted keys, without this checksum) and :func:`weights_checksum`."""
    rest = {key: value for key, value in header.items() if key != CHECKSUM_KEY}
    digest = hashlib.sha256(json.dumps(rest, sort_keys=True).encode())
    digest.update(weights_checksum(state_dict).encode())
    return digest.hexdigest()


@dataclass
class LoadedModel:
    network: object  # torch.nn.Module, in eval mode, float32, on the requested device
    header: dict
    path: Path


def build_from_header(header: dict):
    """The (untrained) network an architecture header describes, with the input size it was trained at: a
    registration network, or a gland segmentation network (:mod:`.glands`)."""
    from ..core.config import GLAND_NETWORK_TYPE
    from .gland_network import GlandNet
    from .networks import build_network

    architecture = dict(header["architecture"])
    network_type = architecture.pop("network_type")
    network = (
        GlandNet(**architecture) if network_type == GLAND_NETWORK_TYPE else build_network(network_type, **architecture)
    )
    if header.get("training_input_shape_kji"):  # absent in files written before LabelReg recorded it
        network.min_input_shape = tuple(int(n) for n in header["training_input_shape_kji"])
    return network


def save_model(path: str | Path, network, header: dict, half_precision: bool = False) -> None:
    """Write ``network``'s weights and ``header`` atomically; ``half_precision`` stores float16 weights."""
    import torch

    state = {name: tensor.detach().cpu().clone() for name, tensor in network.state_dict().items()}
    if half_precision:
        state = {name: t.half() if t.is_floating_point() else t for name, t in state.items()}
    header = {key: value for key, value in header.items() if key != CHECKSUM_KEY}
    header["storage"] = "float16" if half_precision else "float32"
    header[CHECKSUM_KEY] = model_checksum(header, state)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "header": json.dumps(header, sort_keys=True),
        "state_dict": state,
    }
    with atomic_output(path, _verify_model) as temporary:
        torch.save(payload, temporary)


def _verify_model(path: Path) -> None:
    """A model file just written, read back before it replaces anything: complete, and its weights and header
    those its checksum was made of (the header's bounds are the reader's business, not the writer's)."""
    from ..core.writes import ShortWrite

    try:
        payload = load_weights_only(path, "model file")
        header = json.loads(payload["header"])
        intact = model_checksum(header, payload["state_dict"]) == header.get(CHECKSUM_KEY)
    except (ModelFileError, KeyError, TypeError, ValueError) as error:
        raise ShortWrite(f"it cannot be read back ({getattr(error, 'problem', error)})") from None
    if not intact:
        raise ShortWrite("what was read back differs from what was written")


def check_header(header: dict, path: str | Path) -> dict:
    """Refuse header values that no LabelReg training writes, before anything is built from them (an
    architecture outside the settings' ranges, an absurd number of passes, size or spacing)."""
    from dataclasses import fields

    from ..core.config import GLAND_NETWORK_TYPE, TrainConfig
    from ..core.settings import setting_problem

    schema = {f.name: f for f in fields(TrainConfig)}
    architecture = header.get("architecture")
    if not isinstance(architecture, dict) or "network_type" not in architecture:
        raise ModelFileError(path, "has no architecture in its header")
    gland_model = architecture["network_type"] == GLAND_NETWORK_TYPE
    allowed = (
        ("num_channel_initial", "norm")
        if gland_model
        else ("network_type", "num_channel_initial", "ddf_levels", "norm")
    )
    for key, value in architecture.items():
        if gland_model and key == "network_type":
            continue
        problem = setting_problem(value, schema[key]) if key in allowed else "unknown"
        if problem:
            raise ModelFileError(path, f"header architecture {key} = {value!r}: {problem}")
    checks = {
        "working_spacing_mm": lambda v: v is None or (isinstance(v, (int, float)) and 0.1 <= v <= 50),
        "inference_passes": lambda v: isinstance(v, int) and 1 <= v <= 8,
        "training_input_shape_kji": lambda v: (
            isinstance(v, list) and len(v) == 3 and all(isinstance(n, int) and 2 <= n <= 1024 for n in v)
        ),
    }
    for key, valid in checks.items():
        if key in header and not valid(header[key]):
            raise ModelFileError(path, f"header {key} = {header[key]!r} is out of range")
    return header


def load_weights_only(path: Path, kind: str):
    """``torch.load(path, weights_only=True)`` on the CPU, its failures as one :class:`ModelFileError` naming
    the file: never PyTorch's advice to load with ``weights_only=False``, which would run the file's code."""
    import pickle
    import zipfile

    import torch

    from ..core.paths import missing_file_problem

    problem = missing_file_problem(path, kind)
    if problem:
        raise ModelFileError(path, problem)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise ModelFileError(path, f"is truncated, damaged or not a {kind} (not a PyTorch zip archive)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line.strip() for line in str(error).splitlines()]
        reason = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[0])
        raise ModelFileError(
            path,
            f"refused: it holds Python objects that a weights-only load will not build ({reason}); it is not"
            f" a LabelReg {kind} and must not be trusted",
        ) from error
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as error:
        raise ModelFileError(path, f"is truncated, damaged or not a {kind} ({str(error).splitlines()[0]})") from error


def read_model_payload(path: str | Path) -> tuple[dict, dict]:
    """``(header, state_dict)`` of a model file, checked; raises :class:`ModelFileError` naming the problem."""
    path = Path(path)
    payload = load_weights_only(path, "model file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(path, "is not a LabelReg model file (no 'labelreg-model' format marker)")
    if payload.get("format_version") != FORMAT_VERSION:
        older = payload.get("format_version") == 1
        raise ModelFileError(
            path,
            f"has model format version {payload.get('format_version')}; this LabelReg reads version {FORMAT_VERSION}"
            + (" (version 1's checksum does not cover the header: train the model again)" if older else ""),
        )
    try:
        header = json.loads(payload["header"])
        state = payload["state_dict"]
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ModelFileError(path, f"has a damaged header ({error})") from error
    check_header(header, path)
    if model_checksum(header, state) != header.get(CHECKSUM_KEY):
        raise ModelFileError(
            path, "header or weights do not match the checksum in its header: the file was modified or damaged"
        )
    return header, state


def peek_model_header(path: str | Path) -> dict:
    """The header of a model file read with the standard library only: no torch import, no weights read.

    ``torch.save`` writes a zip archive whose ``data.pkl`` holds the payload
    dict; its ``"header"`` value is a plain string in that pickle. The pickle's
    opcodes are only scanned (``pickletools.genops`` builds no object), so this
    is as safe as the weights-only load. Nothing is verified: use
    :func:`read_model_header` (or :func:`load_model`) before trusting the file.
    """
    import pickletools
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "model file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = next((archive.read(n) for n in archive.namelist() if n.endswith("/data.pkl")), b"")
            strings = [
                arg for op, arg, _pos in pickletools.genops(pickled) if isinstance(arg, str) and "UNICODE" in op.name
            ]
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise ModelFileError(
            path, f"is truncated, damaged or not a model file ({str(error).splitlines()[0]})"
        ) from error
    # the payload dict's keys and values in order: "format", "labelreg-model", "format_version", "header", "<JSON>", ...
    if strings[:2] != ["format", FORMAT] or "header" not in strings[:-1]:
        raise ModelFileError(path, "is not a LabelReg model file (no 'labelreg-model' format marker)")
    try:
        return json.loads(strings[strings.index("header") + 1])
    except json.JSONDecodeError as error:
        raise ModelFileError(path, f"has a damaged header ({error})") from error


def model_settings_flags(header: dict) -> list[str]:
    """``labelreg train`` flags that reproduce a model's architecture, working spacing and initial
    alignment (what training from it with ``initial_model`` needs to match)."""
    flags = [
        "--initial_alignment",
        header.get("initial_alignment", "centers"),
        "--working_spacing",
        str(header.get("working_spacing_mm") or 0),
    ]
    for key, value in header["architecture"].items():
        flags += [f"--{key}", value if isinstance(value, str) else json.dumps(value).replace(" ", "")]
    return flags


def read_model_header(path: str | Path) -> dict:
    """Only the header (architecture, preprocessing, training summary, validation metrics)."""
    return read_model_payload(path)[0]


def load_model(path: str | Path | None = None, device="cpu") -> LoadedModel:
    """Load a model file (default: the bundled model) onto ``device`` in eval mode, float32."""
    import torch

    path = Path(path) if path else default_model_path()
    header, state = read_model_payload(path)
    try:
        network = build_from_header(header)
        network.load_state_dict({name: t.float() if t.is_floating_point() else t for name, t in state.items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ModelFileError(
            path, f"weights do not fit the architecture in its header ({str(error).splitlines()[0]})"
        ) from error
    return LoadedModel(network.to(device=device, dtype=torch.float32).eval(), header, path)
