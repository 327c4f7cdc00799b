"""A lowered network on Lava's clock: every Dense/Sparse hop takes one Lava step, so stage n's software step t runs at
Lava step t + latency[n], and a projection reaching a stage over fewer hops than its latency asks for gets the
difference as a Loihi 2 synaptic delay (docs/loihi-fixed-point.md §4)."""

from __future__ import annotations

from dataclasses import dataclass

from snnchip.errors import UnsupportedNodeError
from snnchip.export.loihi2 import MAX_LAVA_DELAY
from snnchip.export.lowering import INPUT, LoweredNet


@dataclass(frozen=True)
class Schedule:
    """Lava timing of a lowered net: stage n's software step t runs at Lava step t + latency[n]; projection i of
    stage n gets ``extra[n][i]`` steps of synaptic delay on top of the one step every Dense/Sparse hop takes."""

    latency: dict[str, int]
    extra: dict[str, tuple[int, ...]]

    @property
    def depth(self) -> int:
        return max(self.latency.values())


def schedule(net: LoweredNet) -> Schedule:
    """Latencies from the longest path, k_n = max(1, max_p k_src + 1 − d_p) (k_input = 0), and extra delays
    e_p = k_n − k_src − 1 + d_p ≥ 0. A cycle whose float delays sum to fewer steps than its hops cannot be met
    (each Lava hop takes a step) and is refused naming it."""
    latency = {INPUT: 0}
    for st in net.stages:  # run order: same-step sources first; recurrent sources may come later
        latency[st.name] = max([1] + [latency[p.source] + 1 - p.delay for p in st.inputs if p.source in latency])
    for _ in range(len(net.stages)):  # recurrent sources raise later stages' latencies only through cycles
        changed = False
        for st in net.stages:
            k = max([1] + [latency[p.source] + 1 - p.delay for p in st.inputs])
            if k > latency[st.name]:
                latency[st.name], changed = k, True
        if not changed:
            break
    extra = {}
    for st in net.stages:
        e = tuple(latency[st.name] - latency[p.source] - 1 + p.delay for p in st.inputs)
        bad = [(p, x) for p, x in zip(st.inputs, e, strict=True) if x < 0]
        if bad:
            p, _ = bad[0]
            raise UnsupportedNodeError(
                f"stage {st.name!r}: its input from {p.source!r} (delay {p.delay}) closes a cycle with fewer steps of "
                f"delay than synaptic hops; on Lava every hop takes one step, so a feedback loop over k layers needs "
                f"a delay of at least k steps (only self-recurrence, one layer and one step, is exact)")
        if max(e, default=0) > MAX_LAVA_DELAY:
            raise UnsupportedNodeError(f"stage {st.name!r}: an input needs {max(e)} steps of synaptic delay to stay "
                                       f"aligned; Loihi 2 delays have 6 bits (≤ {MAX_LAVA_DELAY})")
        extra[st.name] = e
    latency.pop(INPUT)
    return Schedule(latency, extra)
