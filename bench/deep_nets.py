"""Deep foreign NIR graphs in the node layouts the peer libraries write (tests/data/peers: the files each library's own
exporter wrote, whose layouts these copy node for node), and event-like inputs for them.

- ``sinabs_cnn``: Sinabs ``to_nir`` of the NIR paper's N-MNIST CNN shape: numbered nodes, Conv2d (zero bias
  written), IF (r = 1, v_reset = 0), SumPool2d, Flatten, Affine; read exact, dt = 1, subtract, ≥.
- ``snntorch_cnn``: snnTorch ``export_to_nir``: Conv2d with bias, Leaky as LIF (dt = 1e-4, tau = dt/(1 − β),
  r = 1/(1 − β)), AvgPool2d, Flatten, Affine; Euler, reset zero, >.
- ``norse_cnn``: Norse ``to_nir``: Conv2d → LIFBoxCell as LIF (dt = 1e-6, tau_mem = 5e-6, r = 1), then Affine →
  LIFCell as CubaLIF (tau_syn 5e-6, tau_mem 1e-5, w_in 1); Euler, reset to v_reset = 0, >.
- ``snntorch_braille``: snnTorch RSynaptic (the NIR paper's Braille RNN: 12 → 38 recurrent CubaLIF → 7 CubaLIF),
  inlined with dotted names (fc1, lif1.lif, lif1.w_rec, fc2, lif2), delayed subtraction.

Inputs: ``sparse_events`` (Bernoulli spikes), ``digit_events`` (sklearn's 8×8 digits upsampled to the net's
input, two polarity channels, each pixel a Bernoulli event stream at a rate ∝ its intensity).
"""

from __future__ import annotations

import copy

import nir
import numpy as np

from snnchip.spec import Interpretation

SINABS = Interpretation(dt=1.0, discretization="exact", reset="subtract", compare="ge")
SNNTORCH = Interpretation(dt=1e-4, discretization="euler", reset="zero", compare="gt")
SNNTORCH_SUBTRACT = Interpretation(dt=1e-4, discretization="euler", reset="subtract_next", compare="gt")
NORSE = Interpretation(dt=1e-6, discretization="euler", reset="v_reset", compare="gt")
IMAGE = (2, 16, 16)


def _conv(rng, c_in: int, c_out: int, size: int, gain: float, bias: float = 0.0, stride: int = 1) -> nir.Conv2d:
    w = rng.normal(0.0, gain / np.sqrt(c_in * 9), (c_out, c_in, 3, 3)).astype(np.float32)
    b = (rng.normal(0.0, bias, c_out) if bias else np.zeros(c_out)).astype(np.float32)
    return nir.Conv2d(input_shape=np.array([size, size]), weight=w, stride=np.array([stride, stride]),
                      padding=np.array([1, 1]), dilation=np.array([1, 1]), groups=1, bias=b)


def _affine(rng, n_in: int, n_out: int, gain: float, bias: float = 0.0) -> nir.Affine:
    w = rng.normal(0.0, gain / np.sqrt(n_in), (n_out, n_in)).astype(np.float32)
    b = (rng.normal(0.0, bias, n_out) if bias else np.zeros(n_out)).astype(np.float32)
    return nir.Affine(weight=w, bias=b)


def _chain(nodes: list[nir.NIRNode], in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> nir.NIRGraph:
    named = {str(i): n for i, n in enumerate(nodes)}
    names = ["input", *named, "output"]
    return nir.NIRGraph(nodes={"input": nir.Input({"input": np.array(in_shape)}), **named,
                               "output": nir.Output({"output": np.array(out_shape)})},
                        edges=list(zip(names[:-1], names[1:], strict=True)))


def sinabs_cnn(seed: int = 0, classes: int = 10) -> nir.NIRGraph:
    """Three Conv→IF→SumPool stages (2→8→16→16 channels, 16×16 → 2×2), then Flatten→Linear→IF: 4 spiking layers."""
    rng = np.random.default_rng(seed)

    def iaf(shape):
        return nir.IF(r=np.ones(shape, np.float32), v_threshold=np.ones(shape, np.float32),
                      v_reset=np.zeros(shape, np.float32))

    def pool():
        return nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))

    nodes = [_conv(rng, 2, 8, 16, 1.0), iaf((8, 16, 16)), pool(), _conv(rng, 8, 16, 8, 0.5), iaf((16, 8, 8)), pool(),
             _conv(rng, 16, 16, 4, 0.45), iaf((16, 4, 4)), pool(),
             nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array([16, 2, 2])}),
             _affine(rng, 64, classes, 0.5), iaf((classes,))]
    return _chain(nodes, IMAGE, (classes,))


def _leaky(shape, beta: float, dt: float = 1e-4) -> nir.LIF:
    ones = np.ones(shape, np.float32)
    return nir.LIF(tau=ones * dt / (1 - beta), r=ones / (1 - beta), v_leak=0 * ones, v_threshold=ones,
                   v_reset=0 * ones)


def snntorch_cnn(seed: int = 0, classes: int = 10) -> nir.NIRGraph:
    """Three Conv→Leaky→AvgPool stages and Flatten→Linear→Leaky (β 0.9 … 0.8): 4 spiking layers."""
    rng = np.random.default_rng(seed)

    def pool():
        return nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))

    nodes = [_conv(rng, 2, 8, 16, 1.6, 0.05), _leaky((8, 16, 16), 0.9), pool(), _conv(rng, 8, 16, 8, 3.2, 0.05),
             _leaky((16, 8, 8), 0.9), pool(), _conv(rng, 16, 16, 4, 4.0, 0.05), _leaky((16, 4, 4), 0.85), pool(),
             nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array([16, 2, 2])}),
             _affine(rng, 64, classes, 4.0, 0.05), _leaky((classes,), 0.8)]
    return _chain(nodes, IMAGE, (classes,))


def norse_cnn(seed: int = 0, classes: int = 10) -> nir.NIRGraph:
    """Two Conv→LIFBox stages (stride 2), then Flatten→Linear→LIF(cuba)→Linear→LIF(cuba): 4 spiking layers."""
    rng = np.random.default_rng(seed)

    def lifbox(shape):
        ones = np.ones(shape, np.float32)
        return nir.LIF(tau=ones * 5e-6, r=ones, v_leak=0 * ones, v_threshold=ones, v_reset=0 * ones)

    def cuba(shape):
        ones = np.ones(shape, np.float32)
        return nir.CubaLIF(tau_syn=ones * 5e-6, tau_mem=ones * 1e-5, r=ones, v_leak=0 * ones, v_threshold=ones,
                           v_reset=0 * ones, w_in=ones)

    c1, c2 = _conv(rng, 2, 8, 16, 6.0, 0.1, stride=2), _conv(rng, 8, 16, 8, 16.0, 0.05, stride=2)
    nodes = [c1, lifbox((8, 8, 8)), c2, lifbox((16, 4, 4)),
             nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array([16, 4, 4])}),
             _affine(rng, 256, 32, 32.0, 0.02), cuba((32,)), _affine(rng, 32, classes, 40.0, 0.02), cuba((classes,))]
    return _chain(nodes, IMAGE, (classes,))


def snntorch_braille(seed: int = 0, n_in: int = 12, hidden: int = 38, classes: int = 7) -> nir.NIRGraph:
    """snnTorch's RSynaptic layout (alpha 0.7 → w_in 1/(1 − α), β 0.9 / 0.8, dt = 1e-4), 12 → 38 → 7."""
    rng = np.random.default_rng(seed)
    dt = 1e-4

    def synaptic(n, alpha, beta):
        ones = np.ones(n, np.float32)
        return nir.CubaLIF(tau_syn=ones * dt / (1 - alpha), tau_mem=ones * dt / (1 - beta), r=ones / (1 - beta),
                           v_leak=0 * ones, v_threshold=ones, v_reset=0 * ones, w_in=ones / (1 - alpha))

    nodes = {"input": nir.Input({"input": np.array([n_in])}), "fc1": _affine(rng, n_in, hidden, 0.35, 0.02),
             "lif1.lif": synaptic(hidden, 0.7, 0.9), "lif1.w_rec": _affine(rng, hidden, hidden, 0.25, 0.01),
             "fc2": _affine(rng, hidden, classes, 0.35, 0.02), "lif2": synaptic(classes, 0.7, 0.8),
             "output": nir.Output({"output": np.array([classes])})}
    edges = [("input", "fc1"), ("fc1", "lif1.lif"), ("lif1.lif", "lif1.w_rec"), ("lif1.w_rec", "lif1.lif"),
             ("lif1.lif", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def sparse_events(seed: int, T: int, batch: int, shape: tuple[int, ...], density: float = 0.15) -> np.ndarray:
    """Bernoulli(density) events [T, batch, *shape], float32."""
    return (np.random.default_rng(seed).random((T, batch, *shape)) < density).astype(np.float32)


def digit_events(seed: int, T: int, batch: int, shape: tuple[int, int, int] = IMAGE, rate: float = 0.4
                 ) -> np.ndarray:
    """sklearn's digits (8×8, 0..16) upsampled to ``shape``'s H×W: ON events at rate·intensity in channel 0, OFF
    events at rate·(1 − intensity)/4 in channel 1, a random sample each (``seed``), [T, batch, *shape]."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    images = load_digits().images[rng.choice(1797, batch, replace=False)] / 16.0
    return _events_of(images, T, rng, shape, rate)


def _events_of(images: np.ndarray, T: int, rng: np.random.Generator, shape: tuple[int, int, int] = IMAGE,
               rate: float = 0.4) -> np.ndarray:
    """``digit_events``' encoding of images [batch, 8, 8] in [0, 1]."""
    k = shape[1] // 8
    img = np.kron(images, np.ones((k, k)))  # [batch, H, W]
    p = np.stack([rate * img, rate * (1 - img) / 4], axis=1)  # [batch, 2, H, W]
    return (rng.random((T, *p.shape)) < p).astype(np.float32)


def train_on_digits(graph: nir.NIRGraph, interpretation: Interpretation, epochs: int = 30, samples: int = 1024,
                    T: int = 20, seed: int = 0) -> tuple[nir.NIRGraph, float]:
    """``graph`` (a chain as the makers above write it) with its Conv2d and Affine weights and biases trained by
    backpropagation through time on ``samples`` of sklearn's digits as events (``digit_events``' encoding, drawn
    anew each epoch), and its accuracy on the last epoch. Loss: cross-entropy of the output layer's spike counts
    (× 0.5); Adam, learning rate 5e-3, batches of 64; spikes with a sigmoid surrogate (slope 4). The neuron steps
    are the reference executor's (``compile_neuron`` and ``snnchip.neurons`` with ``fire``), so the network trained
    is the one measured."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from snnchip.export.nir_exec import NIRExecutor
    from snnchip.neurons import cuba_lif_step, lif_step
    from snnchip.train.neuron import Sigmoid, surrogate_fire

    torch.manual_seed(seed)
    ex = NIRExecutor(graph, interpretation)
    if ex.checked.back_edges:
        raise ValueError("train_on_digits trains feed-forward chains; this graph is recurrent")
    weights = {n: [torch.nn.Parameter(torch.tensor(np.asarray(node.weight, np.float32))),
                   torch.nn.Parameter(torch.tensor(np.asarray(node.bias, np.float32)))]
               for n, node in graph.nodes.items() if isinstance(node, (nir.Conv2d, nir.Affine))}
    surrogate = Sigmoid(4.0, 1.0)

    def layer(name: str, x: torch.Tensor, state: dict) -> torch.Tensor:
        node, op = graph.nodes[name], ex.ops[name]
        if name in weights:
            w, b = weights[name]
            if isinstance(node, nir.Affine):
                return x @ w.T + b
            return F.conv2d(x, w, b, stride=tuple(node.stride), padding=tuple(node.padding),
                            dilation=tuple(node.dilation), groups=int(node.groups))
        if op.neuron is None:
            return op.fn(x)
        p, z = op.neuron, state.setdefault(name, {"i": 0.0, "v": 0.0, "s": 0.0})
        kw = dict(a=p.a, theta=p.theta, b=p.b, c=p.c, reset=p.reset, compare=p.compare, v_reset=p.v_reset,
                  s_prev=z["s"], fire=surrogate_fire(surrogate, p.compare == "gt"))
        if p.syn is None:
            _, z["s"], z["v"] = lif_step(z["v"], x, **kw)
        else:
            _, z["s"], z["i"], z["v"] = cuba_lif_step(z["i"], z["v"], x, a_syn=p.syn[0], b_syn=p.syn[1], **kw)
        return z["s"]

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))[:samples]
    opt = torch.optim.Adam([t for pair in weights.values() for t in pair], lr=5e-3)
    correct = 0
    for epoch in range(epochs):
        correct = 0
        for start in range(0, samples, 64):
            idx = order[start:start + 64]
            x = torch.from_numpy(_events_of(digits.images[idx] / 16.0, T,
                                            np.random.default_rng([seed, epoch, start])))
            state: dict = {}
            counts = 0
            for t in range(T):
                h = x[t]
                for name in ex.checked.order:
                    h = layer(name, h, state)
                counts = counts + h
            y = torch.from_numpy(digits.target[idx])
            loss = F.cross_entropy(counts * 0.5, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += int((counts.argmax(-1) == y).sum())
    trained = copy.deepcopy(graph)
    for name, (w, b) in weights.items():
        trained.nodes[name].weight = w.detach().numpy().copy()
        trained.nodes[name].bias = b.detach().numpy().copy()
    return trained, correct / samples
