"""Integrator: the non-spiking readout (``snnchip.neurons.li_step`` with a = b = 1, c = 0)."""
