"""The training iteration without host synchronisation (``rules.iterate``) and the CUDA-graph path's refusals, on the
CPU (the CUDA side: tests/test_cuda.py)."""

import random

import pytest
import torch
from test_train_equations import data, two_layer

from snnchip.errors import SpecError
from snnchip.train.cuda_graph import GraphedIteration
from snnchip.train.rules import iterate, run_iteration


@pytest.mark.parametrize("method", ["bptt", "ottt-a", "sltt-k", "saf-f"])
def test_iterate_returns_the_loss_as_a_tensor_without_reading_it(method):
    model = two_layer(T=4)
    x, y = data()
    loss, score = iterate(model, x, y, method, k=2, rng=random.Random(0), mse_alpha=0.05)
    model.zero_grad(set_to_none=True)
    ref, ref_score = run_iteration(model, x, y, method, k=2, rng=random.Random(0), mse_alpha=0.05)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and not loss.requires_grad
    assert float(loss) == ref and torch.equal(score, ref_score)


def test_cuda_graph_needs_cuda_and_fixed_backward_steps():
    model = two_layer(T=4)
    x, y = data()
    with pytest.raises(SpecError, match="needs a CUDA device; the batch is on cpu"):
        GraphedIteration(model, x, y, "ottt-a", step=lambda: None)
    with pytest.raises(SpecError, match="sltt-k draws its backward steps per iteration"):
        GraphedIteration(model, x, y, "sltt-k", k=2, step=lambda: None)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_undoing_the_capture_warm_up_leaves_a_fresh_start(optimizer):
    """What GraphedIteration(undo_warmup=...) does after its warm-up: weights and optimizer state back in place, so
    the next iteration equals the first one of an untouched model and optimizer."""
    from snnchip.train.cuda_graph import _snapshot

    x, y = data()
    runs = []
    for warm in (False, True):
        torch.manual_seed(0)
        model = two_layer(T=4)
        opt = (torch.optim.Adam(model.parameters(), lr=0.05) if optimizer == "adam"
               else torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))

        def step(opt=opt):
            opt.step()
            opt.zero_grad(set_to_none=True)

        if warm:
            restore = _snapshot(model, opt)
            for _ in range(3):
                iterate(model, x, y, "ottt-a", step=step)
            restore()
        for _ in range(2):
            iterate(model, x, y, "ottt-a", step=step)
        runs.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
