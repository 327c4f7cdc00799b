"""Integrator: the non-spiking readout, v[t] = v[t-1] + a[t]."""
