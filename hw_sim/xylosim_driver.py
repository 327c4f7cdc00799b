"""SynSense's bit-exact Xylo simulator xylosim (``xylosim.v2``, a C++ extension) driven with a ``XyloConfig``:
the vendor's reference our simulator (``hw_sim.xylo``) is compared with.

xylosim is an optional dependency (``pip install snnchip[xylo]``; ``make setup`` builds it from source).
``available()`` says whether it imports; ``run`` raises ``DeployError`` with the install line when it does not.
"""

from __future__ import annotations

import numpy as np

from snnchip.errors import DeployError
from snnchip.export.xylo_config import XyloConfig
from snnchip.hw_sim.xylo import XyloRecord

INSTALL = "pip install 'xylosim==0.1.3' (a source package: needs g++; `make setup` builds it)"


def _module():
    try:
        import xylosim.v2 as v2
    except ImportError as exc:
        raise DeployError(f"xylosim is not installed ({exc}); {INSTALL}") from None
    return v2


def available() -> bool:
    try:
        _module()
    except DeployError:
        return False
    return True


def layer(cfg: XyloConfig) -> tuple[object, list[object]]:
    """The ``xylosim.v2.XyloLayer`` of ``cfg`` (one synapse per non-zero weight, no aliases) and its synapses: the
    layer holds raw pointers to them, so the caller keeps the list alive as long as the layer."""
    v2 = _module()

    def synapses(w: np.ndarray) -> list[list[object]]:
        return [[v2.XyloSynapse(int(post), int(syn), int(w[pre, post, syn]))
                 for post, syn in np.argwhere(w[pre] != 0)] for pre in range(w.shape[0])]

    held = [synapses(cfg.w_in), synapses(cfg.w_rec), synapses(cfg.w_out[:, :, None])]
    return v2.XyloLayer(
        synapses_in=held[0], synapses_rec=held[1], synapses_out=held[2],
        aliases=[[] for _ in range(cfg.n_hidden)], threshold=cfg.threshold.tolist(),
        threshold_out=cfg.threshold_out.tolist(), has_bias=cfg.has_bias, bias=cfg.bias.tolist(),
        bias_out=cfg.bias_out.tolist(), weight_shift_inp=cfg.shift_in, weight_shift_rec=cfg.shift_rec,
        weight_shift_out=cfg.shift_out, dash_mem=cfg.dash_mem.tolist(), dash_mem_out=cfg.dash_mem_out.tolist(),
        dash_syns=cfg.dash_syn.tolist(), dash_syns_out=[[int(d)] for d in cfg.dash_syn_out], name="snnchip"), held


def run(cfg: XyloConfig, x: np.ndarray) -> XyloRecord:
    """xylosim on input spike counts ``x`` [B, T, n_in] (0-255), each sample from the reset state; the same record
    as ``hw_sim.xylo.run``."""
    cfg.check()
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != cfg.n_in or (x.size and (x.min() < 0 or x.max() > 255)):
        raise ValueError(f"input must be [batch, T, {cfg.n_in}] spike counts in 0-255, got shape {x.shape}")
    net, _held = layer(cfg)
    per_sample = []
    for sample in x:
        net.reset_all()
        net.evolve(sample.astype(int).tolist())
        syn2 = np.array([list(r) for r in net.rec_i_syn2])
        per_sample.append((np.array(net.rec_recurrent_spikes),
                           np.stack([np.array([list(r) for r in net.rec_i_syn]).T, syn2.T], axis=-1),
                           np.array([list(r) for r in net.rec_v_mem]).T, np.array(net.rec_out_spikes),
                           np.array([list(r) for r in net.rec_i_syn_out]).T,
                           np.array([list(r) for r in net.rec_v_mem_out]).T))
    return XyloRecord(*(np.stack([s[k] for s in per_sample]).astype(np.int64).reshape(
        (len(x), x.shape[1]) + shape) for k, shape in enumerate(
            ((cfg.n_hidden,), (cfg.n_hidden, 2), (cfg.n_hidden,), (cfg.n_out,), (cfg.n_out,), (cfg.n_out,)))))
