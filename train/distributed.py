"""Data-parallel training with ``torch.distributed``: one process per GPU (or CPU worker), every learning rule.

``fit`` joins the process group that ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL on CUDA (device ``cuda:LOCAL_RANK``), gloo on CPU. Under
torchrun this holds for any number of processes, one included (``torchrun --nproc-per-node=1`` trains through DDP
and the backend); without a launcher nothing here is used and training is the plain loop.

Data: ``--batch-size`` is the *global* batch B; each of the W ranks takes B/W samples of it.
``DistributedSampler`` (shuffle, seed = the trainer's epoch seed minus the epoch, ``set_epoch`` every epoch)
draws the permutation the single-process trainer draws, and deals it out round-robin, so global batch i on W
ranks holds exactly the samples of batch i in one process (when W divides the dataset size; otherwise the
sampler pads the last batch with up to W − 1 repeated samples). All ranks' local batches have the same size,
so DDP's mean of the per-rank mean losses is the mean over the global batch: gradients equal single-process
ones up to float rounding.

Gradients: the model is wrapped in ``DistributedDataParallel``; the rules call ``model.step`` once per time
step, which ``DataParallelNet`` routes through DDP's ``forward``. DDP all-reduces (averages) gradients in
the backward that follows a forward run with ``require_backward_grad_sync`` set, and only accumulates locally
after one run under ``no_sync`` (the flag is what ``DDP.no_sync()`` sets; it is read at forward time, so we
set it per time step). Per rule:

- ``ottt-o``, ``saf-e``: the optimizer steps after every time step, so every step's backward synchronises
  (all-reduce T times per batch); a per-batch reduction would let ranks step with different gradients.
- ``ottt-a``, ``sltt``, ``sltt-k``, ``saf-f``, ``empf``, ``empf-random-bp``: backward at several steps (all,
  K drawn, one drawn, or the last), one optimizer step per batch: the backward passes run under ``no_sync``
  and only the last backward step synchronises; its all-reduce averages the gradient accumulated over all
  steps (averaging is linear).
- ``bptt``: T forwards build one graph and one backward follows; the first T − 1 forwards run under
  ``no_sync``, the last one arms the reducer, and that single backward all-reduces once.

(``edbp`` refuses to run here: its layer-wise forward does not go through ``model.step``.) DDP's own
reducer rather than a hand-written all-reduce before ``step()``: it buckets gradients and overlaps the
all-reduce with the backward, and ``no_sync`` is its documented way to accumulate.
``find_unused_parameters=True`` because a step need not touch every parameter (feedback weights at t = 1,
per-step parameters); DDP also counts a parameter used under ``no_sync`` as used, so gradients accumulated
in earlier steps are averaged in the synchronising backward even when the last step does not touch it.

SLTT-K's steps (and any rule's random draws) come from ``random.Random(step_seed)``, seeded from the
global step: the same on every rank, and the same for any world size (so resuming on a different number of
processes continues the same run). Rate-coded inputs use a per-rank torch stream (seeded from seed, global
step at start and rank): independent noise per rank, reproducible for a given world size.

Only rank 0 evaluates, shows progress, writes ``metrics.json``, ``curves.png`` and ``model.pt``. The
checkpoint holds the bare ``SpikingNet.state_dict()`` (no DDP ``module.`` prefix) and global progress
(epoch, global batch, global step), so it resumes on any number of processes and loads in one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from .rules import _backward_steps, get_rule


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank, number of processes, its device and the process group's backend
    (None: no process group, the plain loop)."""

    rank: int
    size: int
    device: torch.device
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    def order(self, n: int, base_seed: int, epoch: int) -> torch.Tensor:
        """This rank's sample indices for ``epoch`` (permutation seeded by ``base_seed + epoch``)."""
        sampler = DistributedSampler(range(n), num_replicas=self.size, rank=self.rank, shuffle=True, seed=base_seed)
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long)

    def wrap(self, model: nn.Module):
        """What the rules train: the model itself, or a ``DataParallelNet`` around it."""
        return DataParallelNet(model) if self.distributed else model

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def seed_rank_stream(self, seed: int, global_step: int) -> None:
        """Give each rank its own torch random stream (rate coding), reproducible for this world size."""
        if self.distributed:
            torch.manual_seed(((seed * 100003 + global_step) * 1009 + self.rank) % 2**63)


def launched() -> bool:
    """True under torchrun (which sets ``TORCHELASTIC_RUN_ID``; any number of processes) or any launcher that sets
    ``WORLD_SIZE`` > 1."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """This process's place in the launcher's process group (single process: no group, ``device`` as given).

    The group is joined once per process and kept until exit (or used as is if the caller initialised it):
    destroying and re-creating it against torchrun's store can hang, and a second ``fit`` needs it again.
    """
    if not launched() and not dist.is_initialized():
        yield World(0, 1, device)
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave)
    yield World(dist.get_rank(), dist.get_world_size(), device, dist.get_backend())
    dist.barrier()  # reached on success only: a rank that raised never leaves the others waiting here


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _Step(nn.Module):
    """DDP wraps ``forward``; the rules call ``step``: here ``forward`` is one time step of the net."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x, state, view, record=True):
        return self.net.step(x, state, view, record)


class DataParallelNet:
    """The ``SpikingNet`` as ``run_iteration`` sees it in a distributed run: every attribute is the net's,
    and ``step`` runs through DDP, synchronising gradients only at the steps ``plan`` selects."""

    def __init__(self, net: nn.Module):
        self.net = net
        self.ddp = DistributedDataParallel(_Step(net), find_unused_parameters=True)
        self._t, self._sync = 0, frozenset()

    def __getattr__(self, name):
        return getattr(self.net, name)

    def plan(self, method: str, steps: int, k: int | None, seed: int) -> None:
        """Before each iteration: which forward calls arm the all-reduce (see the module docstring).

        ``seed`` is the one ``run_iteration``'s ``rng`` is made from, so this draws the same backward steps.
        """
        rule = get_rule(method)
        bp = _backward_steps(rule, steps, k, random.Random(seed))
        self._t, self._sync = 0, frozenset(bp if rule.step_every_t else {max(bp)})

    def step(self, x, state, view, record=True):
        self.ddp.require_backward_grad_sync = self._t in self._sync  # what DDP.no_sync() toggles
        self._t += 1
        return self.ddp(x, state, view, record)
