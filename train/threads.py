"""How many threads torch uses for a training run on the CPU: no more than the work and the free cores repay.

Measured (seconds per iteration, ottt-a, T = 6, batch 64; README "Reliability"): a net of fewer than
``SMALL_MACS`` synaptic multiply-adds per sample and step (the digits MLP, 9.5 k) trains no faster on 2 or 16 idle
cores than on one, and on a loaded 2-core machine two threads made every net slower (digits MLP 1.9×, digits
convnet 1.75×, a CIFAR-sized convnet 1.1×), while on idle cores the CIFAR-sized convnet (1.6 M) ran 1.7× faster on
2 threads and 5.2× on 16. So: one thread for a small net, else torch's default capped by the cores that other
processes leave free (from the 1-minute load average). ``OMP_NUM_THREADS`` set by the user (or by torchrun) wins.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

import torch

from snnchip.spec import NetworkSpec

SMALL_MACS = 2**15


def synaptic_macs(spec: NetworkSpec) -> int:
    """Multiply-adds of the synaptic layers per sample and time step: Σ n_in·n_out (linear), C_in·C_out·k²·H·W
    (conv2d, over its output positions)."""
    total, shape = 0, spec.input_shape
    for layer in spec.layers:
        out = layer.output_shape(shape)
        if layer.op == "linear":
            total += math.prod(shape) * layer.out_features
        elif layer.op == "conv2d":
            total += shape[0] * layer.out_channels * layer.kernel_size**2 * out[1] * out[2]
        shape = out
    return total


def free_cores() -> int:
    """Cores this process may use that other processes do not keep busy: the usable cores scaled by the idle
    share of the machine (1-minute load average over all its cores); at least 1."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = os.getloadavg()[0] / (os.cpu_count() or 1) if hasattr(os, "getloadavg") else 0.0
    return max(1, round(usable * max(0.0, 1.0 - busy)))


def training_threads(spec: NetworkSpec) -> int:
    """1 for a net under ``SMALL_MACS``, else min(torch's default, ``free_cores()``)."""
    if synaptic_macs(spec) < SMALL_MACS:
        return 1
    return max(1, min(torch.get_num_threads(), free_cores()))


@contextlib.contextmanager
def threads_for(spec: NetworkSpec, device: torch.device) -> Iterator[None]:
    """Inside: torch uses ``training_threads(spec)`` threads on the CPU, unless ``OMP_NUM_THREADS`` is set."""
    if device.type != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(training_threads(spec))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
