"""snnchip.deploy: NIR graph + quantized parameters -> Lava process graph (lava-nc and our own processes)."""
