"""snnchip: train spiking networks online, export through NIR, deploy to Lava/Loihi 2, and certify.

Core package: the contracts every stage shares (``spec``, ``checkpoint``, ``errors``, ``atomic``,
``lava_compat``) and the CLI face (``cli``). The stages install as subpackages:
``snnchip.train``, ``snnchip.export``, ``snnchip.deploy``, ``snnchip.hw_sim``.
"""

__version__ = "0.1.0"
