"""The model file: loads without running code, rejects tampering and truncation, header round-trips."""

import os
import pickle
import zipfile

import pytest
import torch
from LabelRegLib.core.errors import ModelFileError
from LabelRegLib.nets.model_file import load_model, read_model_header, read_model_payload, save_model
from LabelRegLib.nets.networks import LocalNet

HEADER = {
    "architecture": {
        "network_type": "local",
        "num_channel_initial": 4,
        "ddf_levels": [0, 1, 2, 3, 4],
        "norm": "instance",
    },
    "working_spacing_mm": 1.5,
    "intensity_normalisation": {"method": "percentile", "low": 1.0, "high": 99.0},
    "initial_alignment": "centers",
    "training_input_shape_kji": [20, 30, 22],
    "training": {"data": "phantoms", "steps": 3},
    "validation": {"val_dice": 0.5},
}


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/labelreg-was-pwned",))


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "model.pt"
    save_model(path, LocalNet(4, norm="instance"), HEADER)
    return path


def test_header_round_trips_and_weights_load(model_path):
    header = read_model_header(model_path)
    for key, value in HEADER.items():
        assert header[key] == value
    assert header["storage"] == "float32" and len(header["model_sha256"]) == 64
    loaded = load_model(model_path)
    assert not loaded.network.training
    assert loaded.network.min_input_shape == (20, 30, 22)  # smaller inputs are padded to the training size
    assert all(p.dtype == torch.float32 for p in loaded.network.parameters())


def test_half_precision_storage_loads_as_float32(tmp_path):
    network = LocalNet(4, norm="instance")
    save_model(tmp_path / "half.pt", network, HEADER, half_precision=True)
    assert read_model_header(tmp_path / "half.pt")["storage"] == "float16"
    loaded = load_model(tmp_path / "half.pt").network
    for (name, a), b in zip(network.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == a.dtype and torch.allclose(a, b, atol=1e-2), name


def test_the_loader_cannot_execute_code(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "labelreg-model", "payload": _RunsCode()}, evil)
    with pytest.raises(ModelFileError, match=r"evil\.pt: refused: .*GLOBAL"):
        load_model(evil)
    plain_pickle = tmp_path / "evil.pkl"
    plain_pickle.write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(ModelFileError, match=r"evil\.pkl: is truncated, damaged or not a model file"):
        load_model(plain_pickle)
    assert not os.path.exists("/tmp/labelreg-was-pwned")


def test_truncated_file_is_rejected(model_path):
    data = model_path.read_bytes()
    model_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"model\.pt: is truncated, damaged or not a model file"):
        load_model(model_path)


def test_tampered_weights_are_rejected(model_path, tmp_path):
    payload = torch.load(model_path, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = payload["state_dict"][name] + 0.01
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(ModelFileError, match="header or weights do not match the checksum"):
        load_model(tmp_path / "tampered.pt")
    wrong_architecture = {**HEADER, "architecture": {**HEADER["architecture"], "num_channel_initial": 8}}
    save_model(tmp_path / "wrong_arch.pt", LocalNet(4, norm="instance"), wrong_architecture)  # a valid checksum
    with pytest.raises(ModelFileError, match="weights do not fit the architecture"):
        load_model(tmp_path / "wrong_arch.pt")


def test_a_header_changed_by_one_byte_is_rejected(model_path, tmp_path):
    """The reviewer's case: the working spacing 1.5 -> 9.5 in the file's bytes (the pickle inside the zip is
    stored uncompressed) would run the network on a wrong grid and move the MR tens of millimetres."""
    data = model_path.read_bytes()
    assert data.count(b'"working_spacing_mm": 1.5') == 1
    edited = tmp_path / "edited.pt"
    edited.write_bytes(data.replace(b'"working_spacing_mm": 1.5', b'"working_spacing_mm": 9.5'))
    with pytest.raises(ModelFileError, match=r"edited\.pt: header or weights do not match the checksum"):
        load_model(edited)
    payload = torch.load(model_path, weights_only=True)  # the same edit written as a well-formed file
    payload["header"] = payload["header"].replace('"working_spacing_mm": 1.5', '"working_spacing_mm": 9.5')
    torch.save(payload, edited)
    with pytest.raises(ModelFileError, match=r"edited\.pt: header or weights do not match the checksum"):
        load_model(edited)


def test_a_version_1_model_whose_checksum_covers_only_the_weights_is_refused(model_path, tmp_path):
    payload = torch.load(model_path, weights_only=True)
    payload["format_version"] = 1
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(ModelFileError, match=r"old\.pt: has model format version 1; .* does not cover the header"):
        load_model(tmp_path / "old.pt")


def test_not_a_labelreg_file_and_missing_file(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="is not a LabelReg model file"):
        read_model_payload(tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match=r"absent\.pt: model file not found"):
        load_model(tmp_path / "absent.pt")
    assert zipfile.is_zipfile(tmp_path / "other.pt")
