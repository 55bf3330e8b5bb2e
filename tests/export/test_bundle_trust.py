"""The loader trusts nothing in a bundle: each tampered copy of a real exported bundle is refused at load
time with one of our errors naming the problem (issue 19, item 5 and the JSON cases of items 7/8)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnx
import pytest
from export_helpers import edit_manifest
from onnx import TensorProto, helper, numpy_helper

from export.exporter import PIN_NAME, _entry
from export.runtime import (
    BundleError,
    IntegrityError,
    ManifestError,
    RobotMismatchError,
    load_bundle,
    read_manifest,
    sha256_file,
)
from latent_vla.base.errors import UserError
from latent_vla.base.robot_spec import KOCH, SO101


def policy_graph(path, z_dim: int = 38, batch: int | str = "batch", seed: int = 0) -> None:
    """A valid ONNX policy (z, task) -> actions (B, 4, 6) that is not the exported one."""
    w = np.random.default_rng(seed).normal(size=(z_dim, 24)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["z", "w"], ["h"]), helper.make_node("Reshape", ["h", "shape"], ["actions"])],
        "impostor",
        [
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [batch, z_dim]),
            helper.make_tensor_value_info("task", TensorProto.FLOAT, [1, 16]),
        ],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [batch, 4, 6])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-1, 4, 6], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def swap_policy(bundle, declare_io: bool, **graph_kw) -> None:
    """Replace policy.onnx by :func:`policy_graph` and recompute its hash and size in the manifest
    (and, with ``declare_io``, its inputs/outputs too: a consistent forgery)."""
    policy_graph(bundle / "policy.onnx", **graph_kw)
    entry = _entry(bundle / "policy.onnx", "fp32").to_dict()
    if not declare_io:
        entry = {k: entry[k] for k in ("sha256", "bytes")}
    edit_manifest(bundle, lambda d: d["graphs"]["policy"]["fp32"].update(entry))


# -- every refusal is a UserError, so the CLI prints one line --------------------------------------
def test_bundle_errors_are_user_errors():
    for cls in (BundleError, ManifestError, IntegrityError, RobotMismatchError):
        assert issubclass(cls, UserError) and issubclass(cls, RuntimeError)


# -- another valid ONNX graph with its hash recomputed ---------------------------------------------
def test_swapped_graph_with_other_io_is_refused_against_the_manifest(copy):
    swap_policy(copy, declare_io=False, z_dim=40)
    with pytest.raises(IntegrityError, match=r"'policy': z has shape \['batch', 40\] in ONNX, \['batch', 38\]"):
        load_bundle(copy)


def test_swapped_graph_with_fixed_batch_is_refused(copy):
    swap_policy(copy, declare_io=False, batch=1)
    with pytest.raises(IntegrityError, match=r"z has shape \[1, 38\] in ONNX, \['batch', 38\] in the manifest"):
        load_bundle(copy)


def test_forged_manifest_io_is_refused_against_the_model_sizes(copy):
    swap_policy(copy, declare_io=True, z_dim=40)
    with pytest.raises(ManifestError, match=r"policy@fp32 inputs are \(z \[batch, 40\].*imply \(z \[batch, 38\]"):
        load_bundle(copy)


def test_forged_latent_size_must_agree_across_graphs(copy):
    """Claiming Z = 40 for the forged policy leaves the encoder and rollout graphs at 38."""
    swap_policy(copy, declare_io=True, z_dim=40)
    edit_manifest(copy, lambda d: d["model"].update(latent_dim=40))
    with pytest.raises(
        ManifestError, match=r"graph encoder@fp32 outputs are \(z \[batch, 38\] float32\).*z \[batch, 40\]"
    ):
        load_bundle(copy)


def test_another_graph_of_the_bundle_in_place_of_the_policy_is_refused(copy):
    shutil.copyfile(copy / "cost_grad.onnx", copy / "policy.onnx")
    entry = _entry(copy / "policy.onnx", "fp32").to_dict()
    edit_manifest(copy, lambda d: d["graphs"]["policy"]["fp32"].update(entry))
    with pytest.raises(ManifestError, match=r"graph policy@fp32 inputs are \(z0 \[batch, 38\]"):
        load_bundle(copy)


def test_identical_io_forgery_is_caught_only_by_the_pin(copy, bundle_dir):
    """Same I/O, other weights: structurally valid, so only the pinned manifest hash can tell."""
    pin = read_manifest(bundle_dir).sha256
    swap_policy(copy, declare_io=False, z_dim=38, seed=3)
    assert load_bundle(copy).sha256 != pin
    with pytest.raises(IntegrityError, match="not the pinned"):
        load_bundle(copy, expected_sha256=pin)


# -- pinning ----------------------------------------------------------------------------------------
def test_export_prints_and_writes_the_manifest_sha256(exported, bundle_dir, caplog):
    digest = sha256_file(bundle_dir / "manifest.json")
    assert exported.manifest_sha256 == digest and exported.to_dict()["manifest_sha256"] == digest
    assert (bundle_dir / PIN_NAME).read_text() == f"{digest}  manifest.json\n"
    bundle = load_bundle(bundle_dir, expected_sha256=digest)
    assert bundle.sha256 == digest
    load_bundle(bundle_dir, expected_sha256=f"  {digest.upper()} ")  # case and spaces do not matter


def test_a_pin_refuses_any_other_manifest(copy, bundle_dir):
    digest = read_manifest(bundle_dir).sha256
    data = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(data, indent=1))  # same content, other bytes
    with pytest.raises(IntegrityError, match=f"not the pinned {digest}"):
        load_bundle(copy, expected_sha256=digest)
    with pytest.raises(BundleError, match="64 hex digits"):
        load_bundle(copy, expected_sha256="abc123")


# -- action / state bounds --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda n: n["action_max"].__setitem__(0, 1e6), r"action_max of shoulder_pan is 1e\+06, outside -132\.\.132"),
        (lambda n: n.update(action_min=[-1e6] * 6), r"action_min of shoulder_pan is -1e\+06.*; and 2 more"),
        (lambda n: n["state_mean"].__setitem__(5, -500.0), "state_mean of gripper is -500"),
        (lambda n: n["state_std"].__setitem__(1, 1e4), "state_std of shoulder_lift is 10000"),
    ],
)
def test_normalization_bounds_beyond_the_joint_limits_are_refused(copy, edit, message):
    edit_manifest(copy, lambda d: edit(d["normalization"]))
    with pytest.raises(ManifestError, match=r"normalization does not fit robot 'so101''s joint limits.*" + message):
        load_bundle(copy)


def test_non_finite_normalization_is_refused(copy):
    edit_manifest(copy, lambda d: d["normalization"]["action_max"].__setitem__(2, float("inf")))
    with pytest.raises(ManifestError, match="normalization is malformed: .*non-finite"):
        load_bundle(copy)


def test_widened_robot_spec_is_refused_without_and_with_a_robot(copy):
    def widen(d):
        for j in d["robot_spec"]["joints"]:
            j.update(lower=-1e6, upper=1e6)
        d["normalization"].update(action_min=[-1e5] * 6, action_max=[1e5] * 6)

    edit_manifest(copy, widen)
    with pytest.raises(RobotMismatchError, match="joint limits"):
        load_bundle(copy)  # it calls itself so101: it must carry so101's limits
    edit_manifest(copy, lambda d: d["robot_spec"].update(name="custom"))
    with pytest.raises(RobotMismatchError, match="joint limits"):
        load_bundle(copy, robot=SO101)


def test_non_finite_robot_limits_are_refused(copy):
    edit_manifest(copy, lambda d: d["robot_spec"]["joints"][0].update(upper=float("nan")))
    with pytest.raises(ManifestError, match="non-finite or inverted joint limits"):
        load_bundle(copy)


def test_non_numeric_robot_limits_are_refused(copy):
    edit_manifest(copy, lambda d: d["robot_spec"]["joints"][0].update(lower="low"))
    with pytest.raises(ManifestError, match="non-numeric joint limits"):
        load_bundle(copy)


def test_a_koch_bundle_is_refused_on_the_so101(copy):
    edit_manifest(copy, lambda d: d.update(robot_spec=json.loads(json.dumps(KOCH.to_dict()))))
    assert load_bundle(copy).spec == KOCH  # a consistent Koch bundle
    with pytest.raises(RobotMismatchError, match="differ from the robot's"):
        load_bundle(copy, robot=SO101)


# -- sizes of the normalization against the graphs --------------------------------------------------
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: (d["normalization"]["action_min"].pop(), d["normalization"]["action_max"].pop()),
            "normalization has 5 action dims, model 6",
        ),
        (lambda d: d["normalization"]["state_std"].pop(), "state_std"),
        (lambda d: d["normalization"].update(image_size=[64, 64]), r"image size \[64, 64\] != model image_size"),
        (lambda d: d["normalization"].update(camera_names=["wrist", "front"]), r"cameras \['wrist', 'front'\] !="),
        (lambda d: d["model"].update(state_dim=7), "model state_dim 7 != robot so101's 6 joints"),
        (lambda d: d["model"].update(horizon=5), r"rollout_cost@fp32 inputs .* imply .*actions \[batch, 5, 6\]"),
        (
            lambda d: (d["normalization"].update(image_size=[64, 64]), d["model"].update(image_size=[64, 64])),
            r"encoder@fp32 inputs are \(image_front \[batch, 3, 32, 32\].*imply \(image_front \[batch, 3, 64, 64\]",
        ),
        (lambda d: d["graphs"]["encoder"]["int8"].update(precision="fp32"), "declare another precision"),
        (lambda d: d["graphs"]["policy"]["fp32"].update(bytes=3 << 30), r"bytes must be an int in 1\.\."),
    ],
)
def test_sizes_that_do_not_fit_the_graphs_are_refused(copy, edit, message):
    edit_manifest(copy, edit)
    with pytest.raises(ManifestError, match=message):
        load_bundle(copy)


# -- files ------------------------------------------------------------------------------------------
def test_symlink_out_of_the_bundle_is_refused(copy, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.copyfile(copy / "policy.onnx", outside)  # the very same bytes
    (copy / "policy.onnx").unlink()
    (copy / "policy.onnx").symlink_to(outside)
    with pytest.raises(IntegrityError, match=r"policy\.onnx is a symlink to .*elsewhere\.onnx, outside the bundle"):
        load_bundle(copy)


def test_manifest_symlink_out_of_the_bundle_is_refused(copy, tmp_path):
    shutil.copyfile(copy / "manifest.json", tmp_path / "manifest.json")
    (copy / "manifest.json").unlink()
    (copy / "manifest.json").symlink_to(tmp_path / "manifest.json")
    with pytest.raises(IntegrityError, match="bundle manifest: manifest.json is a symlink .* outside the bundle"):
        load_bundle(copy)


def test_symlink_inside_the_bundle_is_fine(copy):
    (copy / "store").mkdir()
    os.replace(copy / "policy.onnx", copy / "store" / "policy.onnx")
    (copy / "policy.onnx").symlink_to(copy / "store" / "policy.onnx")
    assert load_bundle(copy).sessions["policy"].spec.file == "policy.onnx"


def test_entry_naming_a_missing_file_is_refused_even_if_not_loaded(copy):
    (copy / "encoder.int8.onnx").unlink()
    with pytest.raises(IntegrityError, match=r"'encoder@int8': file .*encoder\.int8\.onnx is missing"):
        load_bundle(copy, precision="fp32")


def test_graph_size_is_checked_before_reading(copy):
    """A sparse 8 GiB file is refused at once from its size; reading it whole would take minutes."""
    with open(copy / "policy.onnx", "r+b") as fh:
        fh.truncate(8 << 30)
    with pytest.raises(IntegrityError, match=r"policy\.onnx is 8589934592 bytes but the manifest says"):
        load_bundle(copy)


def test_fifo_in_place_of_a_graph_is_refused_without_blocking(copy):
    (copy / "policy.onnx").unlink()
    os.mkfifo(copy / "policy.onnx")
    with pytest.raises(IntegrityError, match=r"policy\.onnx is not a regular file"):
        load_bundle(copy)


# -- manifest.json as bytes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"format": "latent-vla-bundle", "x": "\xff\xfe"}',
            r"manifest\.json is not UTF-8 text \(bad byte at offset 38\)",
        ),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a": ' + b"9" * 5000 + b"}", "holds a value JSON cannot represent"),
        (b"[1, 2, 3]", "must be a JSON object, got list"),
    ],
)
def test_unreadable_manifest_is_refused(copy, content, message):
    (copy / "manifest.json").write_bytes(content)
    with pytest.raises(ManifestError, match=message):
        load_bundle(copy)


def test_huge_manifest_is_refused_before_reading(copy):
    with open(copy / "manifest.json", "r+b") as fh:
        fh.truncate(100 << 20)
    with pytest.raises(ManifestError, match="more than the 67108864 a metadata file may have"):
        load_bundle(copy)
