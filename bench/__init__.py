"""snnchip.bench: the benchmarks (``snn-bench train|hwsim|peers|memory``, ``python -m snnchip.bench.ddp``,
``python -m snnchip.bench.accuracy``).

The folder ``bench/`` at the repository's top is the package ``snnchip.bench`` (pyproject's ``package-dir``).

A top layer like the command-line face: it may import every stage, and no stage imports it.

| module | responsibility |
|---|---|
| ``options`` | checking the command-line values every benchmark shares (T list, names, counts, output paths) |
| ``nets`` | the peer benchmark's networks (conv, MLP, OTTT's VGG-11) as ``NetworkSpec`` and as plain torch layers |
| ``adapters`` | one training iteration per library: ours, SpikingJelly, snnTorch |
| ``measure`` | warm-up and timing (CUDA-synchronised), peak memory, FLOP model, machine throughput, profiling |
| ``report`` | Markdown and plots, from the benchmarks' JSON |
| ``memory`` | ``snn-bench memory``: one iteration's memory at the allocator's peak, by category and by site |
| ``train``, ``hwsim``, ``peers`` | the other ``snn-bench`` subcommands (entry point ``run(args)`` each) |
| ``ddp``, ``accuracy`` | data-parallel throughput, the digits accuracy table |
"""
