"""Faster CPU models of Lava's own DelayDense and DelaySparse (the processes stay Lava's; hardware runs Lava's)."""
