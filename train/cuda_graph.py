"""One training iteration captured as a CUDA graph and replayed: the kernels of all T steps, their backward passes
and the optimizer step launch as one graph, so the host work of each step (Python, autograd, the kernel launches)
is paid once, at capture, instead of every iteration. Off unless asked for (``snn-train --cuda-graph``,
``snn-bench peers`` method suffix ``+graph``); tests/test_cuda.py checks that replays train exactly as
``rules.iterate`` does.

``GraphedIteration(model, x, y, method, step=...)`` runs ``warmup`` real iterations on a side stream (cuDNN plans,
compiled kernels and optimizer state are created before capture), captures ``rules.iterate`` on its own copies of
x and y, and ``it(x, y)`` copies a batch of the same shape in and replays it, returning the loss and class scores
as device tensors (nothing is read back).

Requirements, each refused with a ``SpecError``: a CUDA device; a rule whose backward steps are the same every
iteration (sltt-k and empf-random-bp draw theirs per iteration, which a graph would freeze); an optimizer ``step``
that never reads the device (``torch.optim.SGD``, or Adam/AdamW with ``capturable=True``; not ``GradScaler``, which
reads for infinities). A net or step that reads the device during capture fails the capture, named.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from snnchip.errors import SpecError

from .rules import get_rule, iterate


class GraphedIteration:
    """``rules.iterate`` of ``method`` on batches shaped like (x, y), captured once and replayed per call."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, T: int | None = None,
                 *, step: Callable[[], None], k: int | None = None, mse_alpha: float = 0.0, warmup: int = 3,
                 undo_warmup: torch.optim.Optimizer | None = None):
        """``undo_warmup``: the optimizer ``step`` drives; the warm-up iterations' changes to the model's parameters
        and buffers and to this optimizer's state are undone after capture (in place: the graph holds their
        addresses), so that the first replay is the first training iteration."""
        if get_rule(method).sampled:
            raise SpecError(f"{method} draws its backward steps per iteration; a captured graph would fix them")
        if x.device.type != "cuda":
            raise SpecError(f"a CUDA graph needs a CUDA device; the batch is on {x.device}")
        self.x, self.y = x.clone(), y.clone()
        restore = _snapshot(model, undo_warmup) if undo_warmup is not None else None

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            return iterate(model, self.x, self.y, method, T, k=k, mse_alpha=mse_alpha, step=step)

        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                run()
        torch.cuda.current_stream(x.device).wait_stream(side)
        model.zero_grad(set_to_none=True)  # the graph allocates the gradients it accumulates into
        torch.cuda.synchronize(x.device)
        base = torch.cuda.memory_allocated(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        self.graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self.graph):
                self.loss, self.score = run()
        except RuntimeError as exc:
            raise SpecError(f"{method} could not be captured as a CUDA graph (something in the iteration reads the "
                            f"device or changes shape): {str(exc).splitlines()[0]}") from None
        self.peak_memory_bytes = int(torch.cuda.max_memory_allocated(x.device) - base)
        if restore is not None:
            restore()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training iteration on (x, y): (summed loss, class scores Σ_t o[t]), both device tensors that the next
        call overwrites."""
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.loss, self.score


def _snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """A function that puts the model's parameters and buffers and the optimizer's state back to their values now,
    in place; optimizer state created later is zeroed, the value SGD's momentum (dampening 0) and Adam's moments and
    step count start from."""
    tensors = list(model.state_dict(keep_vars=True).values())
    values = [t.detach().clone() for t in tensors]
    before = {(id(p), key): v.clone() for p, st in optimizer.state.items() for key, v in st.items()
              if isinstance(v, torch.Tensor)}

    @torch.no_grad()
    def restore() -> None:
        for t, v in zip(tensors, values, strict=True):
            t.copy_(v)
        for p, st in optimizer.state.items():
            for key, v in st.items():
                if isinstance(v, torch.Tensor):
                    v.copy_(before[id(p), key]) if (id(p), key) in before else v.zero_()

    return restore
