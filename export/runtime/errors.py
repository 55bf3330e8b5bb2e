"""Exceptions of the ONNX bundle runtime: every bundle problem surfaces as a :class:`BundleError`.

The runtime checks a bundle before onnxruntime sees it, and translates what onnxruntime still
raises into these classes, so a caller never has to parse an onnxruntime traceback. They are
subclasses of :class:`latent_vla.base.errors.UserError` (the ``latent-vla`` command prints one line,
no traceback) and still of ``RuntimeError``, for callers that catch that.
"""

from __future__ import annotations

from latent_vla.base.errors import UserError


class BundleError(UserError, RuntimeError):
    """Base class: something is wrong with an export bundle or with what was fed to it."""


class ManifestError(BundleError):
    """``manifest.json`` is missing, unreadable, incomplete or inconsistent."""


class SchemaVersionError(ManifestError):
    """The manifest was written with a schema this runtime does not know (usually a newer one)."""


class IntegrityError(BundleError):
    """A bundle file is missing, lies outside the bundle, has the wrong sha256/size, is not a loadable ONNX
    graph or has other inputs/outputs than the model's sizes imply; or the manifest is not the pinned one."""


class RobotMismatchError(ManifestError):
    """The bundle was exported for a different robot than the one it is asked to drive."""


class ObservationError(BundleError, ValueError):
    """An observation or instruction fed to the runtime has missing keys, wrong shapes or bad values."""


class InferenceError(BundleError):
    """onnxruntime failed while running a graph whose inputs had passed the checks."""
