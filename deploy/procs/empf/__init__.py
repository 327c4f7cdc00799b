"""EMPF: the graded EM-PF neuron with per-step leak, threshold, input scale and reset offset tables."""
