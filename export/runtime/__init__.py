"""PyTorch-free runtime of export bundles: numpy + onnxruntime, the numpy base (``latent_vla.base``) and the
numpy planning algorithms of ``planners/`` (run on the bundle's graphs through ``BundleBackend``).

Importing this package never imports torch; ``tests/export`` checks that in a subprocess where
``import torch`` fails.
"""

from export.runtime.backend import BundleBackend
from export.runtime.brain import MODES, BundleBrain, BundlePerception, load_bundle_brain
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

__all__ = [
    "MODES",
    "SCHEMA_VERSION",
    "Bundle",
    "BundleBackend",
    "BundleBrain",
    "BundleError",
    "BundlePerception",
    "GraphSpec",
    "InferenceError",
    "IntegrityError",
    "Manifest",
    "ManifestError",
    "ObservationError",
    "RobotMismatchError",
    "SchemaVersionError",
    "TensorSpec",
    "check_robot",
    "load_bundle",
    "load_bundle_brain",
    "read_manifest",
    "sha256_file",
]
