"""snnchip.hw_sim: bit-exact fixed-point chip simulator, equivalence harness, resource/energy estimates."""
