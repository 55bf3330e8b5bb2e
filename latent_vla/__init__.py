"""latent-vla: see, understand an instruction, imagine in a learned latent world model, plan there.

Floors, bottom to top (docs/architecture.md): ``latent_vla.base`` (numpy only: robot spec,
normalization, tokenizer, temporal ensemble), the model (``latent_vla.model``, ``losses``, ``data``,
``train``, ``checkpoint``; PyTorch), ``planners``, ``export`` and ``hardware``, and the application
``latent_vla.app`` (the ``latent-vla`` command). Importing this package imports nothing heavy.
"""

__version__ = "0.1.0"
