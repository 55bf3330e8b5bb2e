"""Driving arms safely: LeRobot robots or the MuJoCo twin, brains, the safety layer, the control loop.

Public API (importing this package loads neither LeRobot nor MuJoCo; ``hardware.twin`` and
``hardware.config_twin`` do, and register the ``latent_vla_twin`` robot type with LeRobot)::

    from hardware import ControlLoop, SafetyLayer, SafetyConfig, ScriptedBrain, load_brain, make_robot
"""

from hardware.brain import Brain, ScriptedBrain, load_brain, load_model_brain
from hardware.control_loop import ControlLoop, LoopReport, safe_disconnect
from hardware.kinematics import ArmKinematics, SerialChain
from hardware.robots import make_robot, make_robot_config, spec_for
from hardware.safety import EmergencyStopped, Intervention, SafetyConfig, SafetyLayer

__all__ = [
    "ArmKinematics",
    "Brain",
    "ControlLoop",
    "EmergencyStopped",
    "Intervention",
    "LoopReport",
    "SafetyConfig",
    "SafetyLayer",
    "ScriptedBrain",
    "SerialChain",
    "load_brain",
    "load_model_brain",
    "make_robot",
    "make_robot_config",
    "safe_disconnect",
    "spec_for",
]
