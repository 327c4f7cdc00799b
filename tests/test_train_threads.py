"""The CPU thread count of a training run: one thread for a small net, else no more than the free cores."""

from __future__ import annotations

import os

import pytest
import torch

from snnchip.spec import NeuronSpec
from snnchip.train import threads
from snnchip.train.zoo import model_spec


def _spec(name, shape):
    return model_spec(name, shape, 10, 6, NeuronSpec(), hidden=(128,))


def test_synaptic_multiply_adds_per_sample_and_step():
    assert threads.synaptic_macs(_spec("mlp", (64,))) == 64 * 128 + 128 * 10
    # convnet: 3→16 and 16→32 channels, 3×3 'same' convolutions on 32×32 and (after pooling) 16×16, 2048 → 10
    assert threads.synaptic_macs(_spec("convnet", (3, 32, 32))) == 3 * 16 * 9 * 32 * 32 + 16 * 32 * 9 * 16 * 16 + \
        2048 * 10


@pytest.mark.parametrize("net,cores,load,expected", [
    (("mlp", (64,)), 16, 0.0, 1),  # digits MLP: 9.5 k multiply-adds, no faster on more threads
    (("convnet", (3, 32, 32)), 2, 0.0, 2),  # idle 2-core machine
    (("convnet", (3, 32, 32)), 2, 3.0, 1),  # 3 busy processes on 2 cores
    (("convnet", (3, 32, 32)), 16, 8.0, 8),  # half of 16 cores busy
])
def test_threads_follow_the_nets_size_and_the_free_cores(monkeypatch, net, cores, load, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(torch, "get_num_threads", lambda: cores)
    assert threads.training_threads(_spec(*net)) == expected


def test_the_count_applies_for_the_run_only_and_omp_num_threads_wins(monkeypatch):
    big, before = _spec("convnet", (3, 32, 32)), torch.get_num_threads()
    monkeypatch.setattr(threads, "training_threads", lambda spec: before + 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with threads.threads_for(big, torch.device("cpu")):
        assert torch.get_num_threads() == before
    monkeypatch.delenv("OMP_NUM_THREADS")
    with threads.threads_for(big, torch.device("cpu")):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
