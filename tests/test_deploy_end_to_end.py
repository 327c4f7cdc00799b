"""Issue 5, verification 3: a digits MLP and a small conv net, exported from model.pt, run in
Loihi2SimCfg(fixed_pt) and take the float PyTorch model's class decisions on >= 95 % of 20 test samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snnchip.export.loihi import export_loihi
from snnchip.train import load_model, simulate
from snnchip.train.data import load_dataset
from snnchip.train.encoding import time_major
from snnchip.train.trainer import TrainConfig, fit


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("model, epochs", [("mlp", 8), ("convnet", 12)])
def test_trained_model_in_lava_fixed_pt_agrees_with_float(model, epochs, tmp_path):
    import snnchip.deploy as deploy

    fit(TrainConfig(out=str(tmp_path / "run"), model=model, hidden="64", T=4, epochs=epochs, quiet=True, device="cpu"))
    net, ckpt = load_model(tmp_path / "run" / "model.pt")
    x, y = load_dataset("digits", spec=ckpt.spec).test
    xs = time_major(x[:20], ckpt.spec)
    with torch.no_grad():
        float_pred = simulate(net, xs).output[-1].argmax(-1).numpy()
    dep_dir = export_loihi(tmp_path / "run" / "model.pt", tmp_path / "deploy")
    lava = deploy.build(dep_dir).run(xs.numpy(), cfg="fixed_pt", states=False)
    lava_pred = np.asarray(lava.output)[-1].argmax(-1)
    assert np.mean(lava_pred == float_pred) >= 0.95
    assert np.mean(float_pred == y[:20].numpy()) > 0.5  # a trained model, not a constant classifier
