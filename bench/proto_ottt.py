"""Prototype of BENCHMARKS.md findings 1–2 for OTTT, measured without editing train/ (it patches ``TraceView``
in this process only): each synapse computed once by a custom autograd Function that saves only (â, W) and
gets grad-input and grad-weight from one ``convolution_backward``, and the spike path's pooling without graph.

``python bench/proto_ottt.py [T] > proto.json``: the largest gradient difference against the current
``TraceView`` on a small net (the paper's gradients must stay exactly), then CPU seconds per ottt-a iteration
and peak saved-storage memory on the benchmark conv net, current and prototype alternated (A B A B), one thread.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers


class TraceSynapse(torch.autograd.Function):
    """Forward W s + b; backward: ∂L/∂â = Wᵀ g (it flows on to s, as today), ∇W = g âᵀ, ∇b = Σ g."""

    @staticmethod
    def forward(ctx, s, a, w, b, conv: bool, stride: int, padding: int):
        ctx.save_for_backward(a, w)
        ctx.conf = (conv, stride, padding, b is not None)
        return F.conv2d(s, w, b, stride, padding) if conv else F.linear(s, w, b)

    @staticmethod
    def backward(ctx, g):
        a, w = ctx.saved_tensors
        conv, stride, padding, has_bias = ctx.conf
        if conv:
            gi, gw, gb = torch.ops.aten.convolution_backward(
                g, a, w, [w.shape[0]] if has_bias else None, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], 1,
                [ctx.needs_input_grad[1], True, has_bias])
        else:
            gi = g @ w if ctx.needs_input_grad[1] else None
            gw, gb = g.t() @ a, (g.sum(0) if has_bias else None)
        return None, gi, gw, gb, None, None, None


def patch(on: bool) -> None:
    from snnchip.train import views

    if not hasattr(views.TraceView, "_orig"):
        views.TraceView._orig = (views.TraceView.synapse, views.TraceView.shape)

    def synapse(self, op, h, state):
        s, a = h
        return TraceSynapse.apply(s, a, op.plain_weight(), op.bias, op.conv, getattr(op, "stride", 1),
                                  getattr(op, "padding", 0))

    def shape(self, op, h):
        with torch.no_grad():
            value = op(h[0])
        return value, op(h[1])

    views.TraceView.synapse, views.TraceView.shape = (synapse, shape) if on else views.TraceView._orig


def grad_difference() -> float:
    from snnchip.train.rules import gradients

    tiny = {"input": [3, 8, 8], "widths": [4, 6, 8], "batch": 4}
    grads = []
    for on in (False, True):
        patch(on)
        model, _, _ = peers.make_iteration(tiny, 3, "ottt-a")
        gen = torch.Generator().manual_seed(1)
        x, y = 3 * torch.rand(4, 3, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen)
        grads.append(gradients(model, x, y, "ottt-a"))
    return max((grads[0][k] - grads[1][k]).abs().max().item() for k in grads[0])


def main(T: int = 4, repeats: int = 3) -> dict:
    torch.set_num_threads(1)
    out = {"prototype": "ottt: synapse once + no-grad spike pooling", "T": T, "net": "conv",
           "grad_max_abs_diff": grad_difference(), "rows": []}
    for on in (False, True, False, True):
        patch(on)
        model, iteration, _ = peers.make_iteration(peers.NETS["conv"], T, "ottt-a")
        peak = peers.saved_tensor_peak(model, iteration)
        cpu = []
        for _ in range(repeats):
            c0 = time.process_time()
            iteration()
            cpu.append(time.process_time() - c0)
        out["rows"].append({"variant": "prototype" if on else "current", "cpu_per_iter_s": statistics.median(cpu),
                            "peak_memory_bytes": peak})
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)))
