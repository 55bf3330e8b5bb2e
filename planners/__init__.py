"""Planning in a world model's latent space (docs/planning.md).

Each algorithm is written once, in numpy, against :class:`planners.backend.PlanningBackend`:
gradient (``planners.gradient``), CEM / MPPI / random shooting (``planners.sampling``), policy-only
(``planners.policy``), MPC (``planners.mpc``), the brain (``planners.brain``). The PyTorch backend is
``planners.torch_backend``; the bundle's onnxruntime backend is ``export.runtime.backend``. Import the
modules you need directly; this package imports nothing (so the torch-free runtime can use it).
"""
