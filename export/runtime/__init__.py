"""PyTorch-free runtime of export bundles: numpy + onnxruntime (+ numpy-only ``latent_vla`` helpers).

Importing this package never imports torch; ``tests/export`` checks that in a subprocess where
``import torch`` fails.
"""

from export.runtime.brain import MODES, BundleBrain, load_bundle_brain
from export.runtime.bundle import Bundle, check_robot, load_bundle
from export.runtime.errors import (
    BundleError,
    InferenceError,
    IntegrityError,
    ManifestError,
    ObservationError,
    RobotMismatchError,
    SchemaVersionError,
)
from export.runtime.manifest import SCHEMA_VERSION, GraphSpec, Manifest, TensorSpec, read_manifest, sha256_file
from export.runtime.planners import (
    ActionTerms,
    CEMPlanner,
    GradientPlanner,
    GradSettings,
    MPPIPlanner,
    SamplingSettings,
)

__all__ = [
    "ActionTerms",
    "MODES",
    "SCHEMA_VERSION",
    "Bundle",
    "BundleBrain",
    "BundleError",
    "CEMPlanner",
    "GradSettings",
    "GradientPlanner",
    "GraphSpec",
    "InferenceError",
    "IntegrityError",
    "MPPIPlanner",
    "Manifest",
    "ManifestError",
    "ObservationError",
    "RobotMismatchError",
    "SamplingSettings",
    "SchemaVersionError",
    "TensorSpec",
    "check_robot",
    "load_bundle",
    "load_bundle_brain",
    "read_manifest",
    "sha256_file",
]
