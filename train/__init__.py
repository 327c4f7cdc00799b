"""snnchip.train: LIF/EM-PF/SRM neurons, learning rules (BPTT, OTTT, SLTT, SAF, ...), models, data, trainer."""
