"""What flows between layers during a step: the only thing learning rules change in the forward.

``SpikeView``  s[t] (BPTT, SLTT, EM-PF, inference); the neuron is ``LIF.step`` or ``empf.EMPF.step``.
``TraceView``  OTTT (Xiao et al. 2022, Eq. 8 / supplement): the pair (s[t], â[t]) with the presynaptic
               trace â[t] = λ·â[t−1] + s[t]. A synapse's value is W·s (computed without graph), its
               gradient is taken through W·â, so ∇W L[t] = g_u[t]·â[t]ᵀ and ∂L/∂s = Wᵀ g_u.
``SafView``    SAF (Ota et al., Eq. 4–5): spike accumulations â[t] flow instead of spikes. Unrolling the
               recursion Û[t] = λ·Û[t−1] + W(â_in[t] − λ·â_in[t−1]) + b with Û[0] = 0 gives
               Û[t] = W·â_in[t] + c_t·b,  c_t = Σ_{k<t} λ^k;  u[t] = Û[t] − θ·λ·â[t−1];
               s[t] = H(u[t] − θ);  â[t] = λ·â[t−1] + s[t]. The readout keeps Ô[t] = W·â[t] + c_t·b and
               emits o[t] = Ô[t] − λ·Ô[t−1] = W s[t] + b. Everything from steps < t is held constant
               (the paper's assumption in Eq. 6), including the bias's past part λ·c_{t−1}·b, so
               ∂L/∂b equals OTTT's. Feedback: Û_dst += W_fb·â_src[t−1] (SAF Sec. 4.3).
"""

from __future__ import annotations

import torch

from .neuron import LIF


def _decay(lam: float, prev: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """λ·prev + x (prev None = 0)."""
    return x if prev is None else lam * prev + x


class SpikeView:
    """Spikes flow; the LIF membrane v is the state."""

    def source(self, x, state, new):
        return x

    def synapse(self, op, h, state):
        return op(h)

    def feedback(self, lin, prev, shape):
        return lin(prev.flatten(1)).view(shape)

    def shape(self, op, h):
        return op(h)

    def scale(self, h, c: float):
        return h if c == 1.0 else h * c

    def neuron(self, p, current, state, new, name):
        s, new["v:" + name] = p.step(current, state.get("v:" + name), state.get("t", 0))
        return s, s

    def readout(self, current, state, new, name):
        return current

    def end_step(self, state, new) -> None:
        pass


class _Replace(torch.autograd.Function):
    """Forward returns ``value``; backward sends the gradient to ``carrier`` (OTTT's switch)."""

    @staticmethod
    def forward(ctx, value: torch.Tensor, carrier: torch.Tensor) -> torch.Tensor:
        return value.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, grad


class TraceView(SpikeView):
    """OTTT: (s, â) pairs flow; forward uses s, the weight gradient uses â."""

    def __init__(self, lam: float):
        self.lam = lam

    def source(self, x, state, new):
        new["a:input"] = _decay(self.lam, state.get("a:input"), x)
        return x, new["a:input"]

    def _switch(self, fn, h):
        s, a = h
        with torch.no_grad():
            value = fn(s)
        return _Replace.apply(value, fn(a))

    def synapse(self, op, h, state):
        return self._switch(op, h)

    def feedback(self, lin, prev, shape):
        return self._switch(lambda z: lin(z.flatten(1)).view(shape), prev)

    def shape(self, op, h):
        return op(h[0]), op(h[1])

    def scale(self, h, c: float):
        return h if c == 1.0 else (h[0] * c, h[1] * c)

    def neuron(self, p: LIF, current, state, new, name):
        s, _ = super().neuron(p, current, state, new, name)
        new["a:" + name] = _decay(self.lam, state.get("a:" + name), s)
        return s, (s, new["a:" + name])


class SafView(SpikeView):
    """SAF: spike accumulations â flow; the state is â (and c_t for the bias), no membrane."""

    def __init__(self, lam: float):
        self.lam = lam

    def source(self, x, state, new):
        new["a:input"] = _decay(self.lam, state.get("a:input"), x)
        return new["a:input"]

    def synapse(self, op, h, state):
        past = self.lam * state.get("c", 0.0)
        bias = None if op.bias is None else op.bias + past * op.bias.detach()
        return op.add_bias(op.kernel(h), bias)

    def neuron(self, p: LIF, current, state, new, name):
        prev = state.get("a:" + name)
        u = current if prev is None else current - p.theta * self.lam * prev
        s = p.fire(u)
        new["a:" + name] = _decay(self.lam, prev, s)
        return s, new["a:" + name]

    def readout(self, current, state, new, name):
        new["o:" + name] = current
        prev = state.get("o:" + name)
        return current if prev is None else current - self.lam * prev

    def end_step(self, state, new) -> None:
        new["c"] = 1.0 + self.lam * state.get("c", 0.0)
