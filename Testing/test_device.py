"""Device choice: auto falls back to the CPU; an absent device is a clear error."""

import pytest
import torch
from LabelRegLib.core.device import available_devices, select_device
from LabelRegLib.core.errors import DeviceError


def test_auto_picks_the_best_available_device():
    device = select_device("auto")
    assert device.type == available_devices()[0]
    assert select_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_requesting_an_absent_gpu_names_what_exists():
    with pytest.raises(DeviceError, match="'cuda'.*not available.*cpu"):
        select_device("cuda")


def test_unknown_device_name_is_rejected():
    with pytest.raises(DeviceError, match="Unknown device 'tpu'"):
        select_device("tpu")
