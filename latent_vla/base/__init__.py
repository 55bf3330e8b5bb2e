"""Floor 1: the numpy-only base that every other floor (and the torch-free runtime) may import.

Robot spec (``robot_spec``), normalization (``normalize``), the instruction tokenizer (``text``) and
the temporal ensemble of overlapping plans (``temporal_ensemble``). Nothing here imports PyTorch,
MuJoCo or LeRobot.
"""
