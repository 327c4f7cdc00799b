"""What flows between layers during a step: the only thing learning rules change in the forward.

``SpikeView``  s[t] (BPTT, SLTT, EM-PF, inference); the neuron is ``LIF.step`` or ``empf.EMPF.step``.
``TraceView``  OTTT (Xiao et al. 2022, Eq. 8 / supplement): the pair (s[t], â[t]) with the presynaptic
               trace â[t] = λ·â[t−1] + s[t]. A synapse's value is W·s, computed once; its backward
               uses â (``_TraceSynapse``), so ∇W L[t] = g_u[t]·â[t]ᵀ and ∂L/∂s = Wᵀ g_u.
``SafView``    SAF (Saiin et al., arXiv:2310.02772, Eq. 4–5): spike accumulations â[t] flow instead of spikes.
               Unrolling the recursion Û[t] = λ·Û[t−1] + W(â_in[t] − λ·â_in[t−1]) + b with Û[0] = 0 gives
               Û[t] = W·â_in[t] + c_t·b,  c_t = Σ_{k<t} λ^k;  u[t] = Û[t] − θ·λ·â[t−1];
               s[t] = H(u[t] − θ);  â[t] = λ·â[t−1] + s[t]. The readout keeps Ô[t] = W·â[t] + c_t·b and
               emits o[t] = Ô[t] − λ·Ô[t−1] = W s[t] + b. Everything from steps < t is held constant
               (the paper's assumption in Eq. 6), including the bias's past part λ·c_{t−1}·b, so
               ∂L/∂b equals OTTT's. Feedback: Û_dst += W_fb·â_src[t−1] (SAF Sec. 4.3).

A view takes a layer's entries of the previous step's state out of the state (``state.pop``) as it updates them,
so that step's membranes and traces are freed layer by layer rather than held next to the new ones to the step's
end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .neuron import LIF, lif_trace_step, saf_step


def _decay(lam: float, prev: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """λ·prev + x (prev None = 0), one kernel."""
    return x if prev is None else torch.add(x, prev, alpha=lam)


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
        s, new["v:" + name] = p.step(current, state.pop("v:" + name, None), state.get("t", 0))
        return s, s

    def readout(self, current, state, new, name):
        return current

    def end_step(self, state, new) -> None:
        pass


class _TraceSynapse(torch.autograd.Function):
    """OTTT's synapse, computed once: forward I = W s + b; backward with the presynaptic trace,
    ∇W = g·âᵀ, ∇b = Σ g, ∂L/∂â = Wᵀ g (routed on to s by the previous neuron's output pair, as in the paper).

    Only (â, W) are saved, and grad-input and grad-weight come from one ``convolution_backward`` (conv) or two
    GEMMs (linear), instead of computing the layer a second time on â with a graph. Under autocast the forward
    ran in g's lower precision; the backward (which autocast does not reach) casts â and W to g's dtype and
    returns each gradient in its input's dtype.
    """

    @staticmethod
    def forward(ctx, s: torch.Tensor, a: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
                conv: tuple[int, int] | None):
        """``conv``: (stride, padding) of a conv2d layer; None for a linear one."""
        ctx.save_for_backward(a, w)
        ctx.conv, ctx.has_bias = conv, b is not None
        return F.linear(s, w, b) if conv is None else F.conv2d(s, w, b, *conv)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        a_in, w_in = ctx.saved_tensors
        a, w = a_in.to(g.dtype), w_in.to(g.dtype)
        conv, need_a = ctx.conv, ctx.needs_input_grad[1]
        if conv is not None:
            stride, padding = conv
            ga, gw, gb = torch.ops.aten.convolution_backward(
                g, a, w, [w.shape[0]] if ctx.has_bias else None, [stride] * 2, [padding] * 2, [1, 1],
                False, [0, 0], 1, [need_a, ctx.needs_input_grad[2], ctx.has_bias])
        else:
            ga = g @ w if need_a else None
            gw = g.t() @ a if ctx.needs_input_grad[2] else None
            gb = g.sum(0) if ctx.has_bias else None
        cast = lambda t, like: None if t is None else t.to(like.dtype)  # noqa: E731
        return None, cast(ga, a_in), cast(gw, w_in), cast(gb, w_in), None


class TraceView(SpikeView):
    """OTTT: (s, â) pairs flow; forward uses s, the weight gradient uses â.

    With ``lam_syn`` > 0 (Xylo's current-based neurons, ``xylo_neuron``) the trace follows their kernel: the input of
    step τ reaches u[t] as κ[t − τ] = Σ_{k=τ}^{t} λ^{t−k}·λ_syn^{k−τ} (the reset ignored, as OTTT ignores it), so
    ĉ[t] = λ_syn·ĉ[t−1] + s[t] and â[t] = λ·â[t−1] + ĉ[t]: ∂u[t]/∂W = â[t], OTTT's Eq. 8 for that neuron.
    """

    def __init__(self, lam: float, lam_syn: float = 0.0):
        self.lam, self.lam_syn = lam, lam_syn

    def _trace(self, s, state, new, name):
        """â of ``name``'s outputs s (and ĉ, with a current)."""
        if self.lam_syn:
            s = new["c:" + name] = _decay(self.lam_syn, state.pop("c:" + name, None), s)
        new["a:" + name] = _decay(self.lam, state.pop("a:" + name, None), s)
        return new["a:" + name]

    def source(self, x, state, new):
        return x, self._trace(x, state, new, "input")

    def synapse(self, op, h, state):
        s, a = h
        return _TraceSynapse.apply(s, a, op.plain_weight(), op.bias, (op.stride, op.padding) if op.conv else None)

    def feedback(self, lin, prev, shape):
        s, a = prev
        return _TraceSynapse.apply(s.flatten(1), a.flatten(1), lin.weight, lin.bias, None).view(shape)

    def shape(self, op, h):
        with torch.no_grad():  # the spike path only carries values: no graph, nothing saved
            value = op(h[0])
        return value, op(h[1])

    def scale(self, h, c: float):
        return h if c == 1.0 else (h[0] * c, h[1] * c)

    def neuron(self, p, current, state, new, name):
        if self.lam_syn:  # a Xylo neuron: its own step, then the current-based trace, whose gradient goes to s
            s, new["v:" + name] = p.step(current, state.pop("v:" + name, None), state.get("t", 0))
            return s, (s, self._trace(s.detach(), state, new, name) + (s - s.detach()))
        s, new["v:" + name], new["a:" + name] = lif_trace_step(current, state.pop("v:" + name, None),
                                                              state.pop("a:" + name, None), p, self.lam)
        return s, (s, new["a:" + name])


class SafView(SpikeView):
    """SAF: spike accumulations â flow; the state is â (and c_t for the bias), no membrane."""

    def __init__(self, lam: float):
        self.lam = lam

    def source(self, x, state, new):
        new["a:input"] = _decay(self.lam, state.pop("a:input", None), x)
        return new["a:input"]

    def synapse(self, op, h, state):
        past = self.lam * state.get("c", 0.0)
        bias = None if op.bias is None else op.bias + past * op.bias.detach()
        return op.affine(h, bias)

    def neuron(self, p: LIF, current, state, new, name):
        s, new["a:" + name] = saf_step(current, state.pop("a:" + name, None), p, self.lam)
        return s, new["a:" + name]

    def readout(self, current, state, new, name):
        new["o:" + name] = current
        prev = state.pop("o:" + name, None)
        return current if prev is None else current - self.lam * prev

    def end_step(self, state, new) -> None:
        new["c"] = 1.0 + self.lam * state.get("c", 0.0)
