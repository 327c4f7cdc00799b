"""Parameter derivations, written once: NIR's continuous-time neurons ↔ the discrete steps of ``snnchip.neurons``.

NIR ("Neuromorphic Intermediate Representation: A Unified Instruction Set for Interoperable Brain-Inspired
Computing", arXiv:2311.14641) writes its neurons as ODEs:
LIF and LI τ·dv/dt = (v_leak − v) + r·I, IF and I dv/dt = r·I; CubaLIF and CubaLI add the current
τ_syn·dI/dt = −I + w_in·x driving v (with τ_mem). Read at step dt under an ``Interpretation``:

    d(τ) = 1 − dt/τ (``euler``)  or  e^{−dt/τ} (``exact``: the input held constant over the step)
    LIF, LI          a = d(τ),      b = (1 − d(τ))·r,  c = (1 − d(τ))·v_leak      (``lif_coefficients``)
    IF, I            a = 1,         b = dt·r,          c = 0                        (``if_coefficients``)
    CubaLIF, CubaLI  a_syn = d(τ_syn), b_syn = (1 − d(τ_syn))·w_in (``unit``: w_in), and a, b, c of τ_mem
                     (``current_coefficients``)

Export writes the inverse with dt = 1:

- our LIF (λ, Euler): τ = 1/(1 − λ), r = τ, v_leak = 0, so that a = λ, b = 1 (``euler_lif_fields``; λ = 1 is
  nir.IF with r = 1); EM-PF's first step the same with its input scale a[1] in r = a[1]·τ.
- the SRM of event-driven BP (Zhu et al., "Training Spiking Neural Networks with Event-driven Backpropagation",
  NeurIPS 2022, Eq. S16): λ_syn = e^{−1/τs}, λ_mem = e^{−1/τm} and the input scale
  c = ε(0) = τm/(τm − τs)·(λ_mem − λ_syn) (``srm_decays``), written as an exact CubaLIF with τ_syn = τs,
  τ_mem = τm, w_in = c/(1 − λ_syn), r = 1/(1 − λ_mem), so that b_syn = c and b = 1 (``srm_cubalif_fields``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from snnchip.spec import Interpretation

ArrayLike = float | np.ndarray


def decay(tau: ArrayLike, interpretation: Interpretation) -> np.ndarray:
    """d(τ) = 1 − dt/τ (``euler``) or e^{−dt/τ} (``exact``), float64."""
    tau = np.asarray(tau, np.float64)
    dt = interpretation.dt
    return np.exp(-dt / tau) if interpretation.discretization == "exact" else 1 - dt / tau


def lif_coefficients(tau: ArrayLike, r: ArrayLike, v_leak: ArrayLike, interpretation: Interpretation
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, c) of a LIF or LI: a = d(τ), b = (1 − d)·r, c = (1 − d)·v_leak."""
    d = decay(tau, interpretation)
    return d, (1 - d) * r, (1 - d) * v_leak


def if_coefficients(r: ArrayLike, interpretation: Interpretation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, c) of an IF or I: a = 1, b = dt·r, c = 0."""
    return np.float64(1.0), interpretation.dt * np.asarray(r, np.float64), np.float64(0.0)


def current_coefficients(tau_syn: ArrayLike, w_in: ArrayLike, interpretation: Interpretation
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(a_syn, b_syn) of a CubaLIF's or CubaLI's current: a_syn = d(τ_syn), b_syn = (1 − d(τ_syn))·w_in, or
    b_syn = w_in with ``current_input`` ``unit`` (the current adds its input whole: Norse's LIFCell)."""
    d = decay(tau_syn, interpretation)
    return d, np.asarray(w_in, np.float64) if interpretation.current_input == "unit" else (1 - d) * w_in


def euler_lif_fields(lam: ArrayLike, gain: ArrayLike = 1.0) -> tuple[ArrayLike, ArrayLike]:
    """NIR (τ, r) of the discrete u = λ·v + gain·x under Euler with dt = 1: τ = 1/(1 − λ), r = gain·τ (λ < 1)."""
    tau = 1.0 / (1.0 - lam)
    return tau, gain * tau


@dataclass(frozen=True)
class SRMDecays:
    """The discrete SRM of event-driven BP: current decay λ_syn, voltage decay λ_mem, input scale c = ε(0)."""

    lam_syn: float
    lam_mem: float
    input_scale: float


def srm_decays(tau_m: float, tau_s: float) -> SRMDecays:
    """λ_syn = e^{−1/τs}, λ_mem = e^{−1/τm}, c = τm/(τm − τs)·(λ_mem − λ_syn) (module docstring)."""
    lam_mem, lam_syn = math.exp(-1.0 / tau_m), math.exp(-1.0 / tau_s)
    return SRMDecays(lam_syn, lam_mem, tau_m / (tau_m - tau_s) * (lam_mem - lam_syn))


def srm_cubalif_fields(tau_m: float, tau_s: float) -> dict[str, float]:
    """The exact-mapping nir.CubaLIF fields of the SRM: tau_syn, tau_mem, w_in = c/(1 − λ_syn), r = 1/(1 − λ_mem)."""
    p = srm_decays(tau_m, tau_s)
    return {"tau_syn": tau_s, "tau_mem": tau_m, "w_in": p.input_scale / (1.0 - p.lam_syn), "r": 1.0 / (1.0 - p.lam_mem)}


XYLO_MAX_DASH = 15  # Xylo's decay registers have 4 bits (snnchip.xylo_limits)


def dash_of(lam: float) -> int:
    """Xylo's bit-shift decay nearest to λ: round(−log2(1 − λ)) in 0..15 (λ = 1: 15); x decays by x >> dash, so
    λ̂ = 1 − 2^−dash (``lam_of``)."""
    if lam >= 1.0:
        return XYLO_MAX_DASH
    return int(min(max(round(-math.log2(1.0 - lam)), 0), XYLO_MAX_DASH))


def lam_of(dash: int) -> float:
    """λ̂ = 1 − 2^−dash: the decay factor of Xylo's bit shift by ``dash``."""
    return 1.0 - 2.0 ** -dash
