"""Shared test setup: deterministic, single-threaded torch (CI has 2 cores)."""

import os
import shutil

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(params=[False, True], ids=["eager", "compiled"])
def kernels(request):
    """The training neuron kernels (snnchip.train.neuron) eager, then torch.compile'd."""
    from snnchip.train import neuron

    if request.param and shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on CPU needs a C++ compiler; none on PATH")
    neuron.compile_kernels(request.param)
    yield request.param
    neuron.compile_kernels(False)
