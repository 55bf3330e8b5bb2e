"""Bundle integrity: the manifest's content, and clear errors for tampered, truncated or newer bundles."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from export_helpers import edit_manifest

from export.runtime import (
    SCHEMA_VERSION,
    IntegrityError,
    ManifestError,
    RobotMismatchError,
    SchemaVersionError,
    load_bundle,
    read_manifest,
    sha256_file,
)
from latent_vla.base.fused_rollout import FUSED_GRAPH, numba_available
from latent_vla.base.normalize import Normalizer
from latent_vla.base.robot_spec import SO100, SO101, RobotSpec, get_robot_spec


def test_manifest_describes_the_bundle(bundle_dir, export_ckpt):
    m = read_manifest(bundle_dir)
    assert m.schema_version == SCHEMA_VERSION
    assert RobotSpec.from_dict(m.robot_spec) == SO101
    assert Normalizer.from_dict(m.normalization).to_dict() == export_ckpt.normalizer.to_dict()
    assert m.tokenizer == export_ckpt.tokenizer.to_dict()
    assert m.model["horizon"] == 4 and m.model["latent_dim"] == 32 + 6 and m.model["chunk_len"] == 4
    fused = {FUSED_GRAPH} if numba_available() else set()  # the fused kernel's tensors, when numba is installed
    assert set(m.graphs) == {"task_embed", "encoder", "policy", "rollout_cost", "cost_grad"} | fused
    assert set(m.graphs["encoder"]) == {"fp32", "fp16", "int8"}
    assert m.producer["package"] == "latent-vla" and m.producer["version"]
    enc = m.graph("encoder")
    assert [t.name for t in enc.inputs] == ["image_front", "image_wrist", "state", "task"]
    assert enc.inputs[0].shape == ("batch", 3, 32, 32) and enc.inputs[0].dtype == "float32"
    assert enc.inputs[3].shape == (1, 16)
    assert [t.name for t in m.graph("cost_grad").outputs] == ["cost", "grad", "step_cost"]
    assert m.graph("cost_grad").outputs[1].shape == ("batch", 4, 6)
    assert m.graph("task_embed").inputs[0].dtype == "int64"
    for variants in m.graphs.values():
        for g in variants.values():
            assert sha256_file(bundle_dir / g.file) == g.sha256
            assert (bundle_dir / g.file).stat().st_size == g.bytes
    assert m.planner["objective"]["smooth_weight"] == 0.1 and m.planner["grad"]["restarts"] >= 1


def test_tampered_graph_is_refused(copy):
    path = copy / "encoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"sha256 of encoder\.onnx"):
        load_bundle(copy)


def test_truncated_graph_is_refused(copy):
    path = copy / "policy.onnx"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IntegrityError, match=r"policy\.onnx is \d+ bytes but the manifest says"):
        load_bundle(copy)


def test_missing_graph_file_is_refused(copy):
    (copy / "cost_grad.onnx").unlink()
    with pytest.raises(IntegrityError, match="cost_grad.onnx is missing"):
        load_bundle(copy)


def test_corrupt_onnx_with_matching_hash_is_refused_before_inference(copy):
    """Garbage that was (re)hashed into the manifest still fails with our error, not onnxruntime's."""
    garbage = b"not an onnx model" * 50
    (copy / "policy.onnx").write_bytes(garbage)

    def rehash(d):
        d["graphs"]["policy"]["fp32"].update(sha256=sha256_file(copy / "policy.onnx"), bytes=len(garbage))

    edit_manifest(copy, rehash)
    with pytest.raises(IntegrityError, match="'policy' .* is not a loadable ONNX model"):
        load_bundle(copy)


def test_manifest_io_must_match_the_model_sizes(copy):
    """Declared graph I/O is checked against what the sizes imply before any graph is read."""
    edit_manifest(copy, lambda d: d["graphs"]["policy"]["fp32"]["inputs"][0].update(name="latent"))
    with pytest.raises(
        ManifestError, match=r"graph policy@fp32 inputs are \(latent \[batch, 38\].* imply \(z \[batch, 38\]"
    ):
        load_bundle(copy)
    edit_manifest(copy, lambda d: d["graphs"]["policy"]["fp32"]["inputs"][0].update(name="z", shape=["batch", 31]))
    with pytest.raises(ManifestError, match=r"z \[batch, 31\] float32, task .* imply \(z \[batch, 38\]"):
        load_bundle(copy)


def test_newer_schema_is_refused(copy):
    edit_manifest(copy, lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}.*up to {SCHEMA_VERSION}"):
        load_bundle(copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("graphs"), r"missing \['graphs'\]"),
        (lambda d: d["graphs"].pop("cost_grad"), r"lacks the fp32 graphs \['cost_grad'\]"),
        (lambda d: d.update(format="something"), "format"),
        (lambda d: d["model"].update(action_dim=5), "action_dim 5"),
        (lambda d: d["graphs"]["encoder"]["fp32"].update(file="../encoder.onnx"), "plain file name"),
        (lambda d: d["graphs"]["encoder"]["fp32"].update(sha256="xyz"), "64 lower-case hex"),
        (lambda d: d["robot_spec"].pop("joints"), "robot_spec is malformed"),
    ],
)
def test_malformed_manifest_is_refused(copy, edit, message):
    edit_manifest(copy, edit)
    with pytest.raises(ManifestError, match=message):
        load_bundle(copy)


def test_unreadable_or_absent_manifest(copy, tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_bundle(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="has no manifest.json"):
        load_bundle(copy)


def test_robot_mismatch_is_refused(bundle_dir):
    with pytest.raises(RobotMismatchError, match="joint limits"):
        load_bundle(bundle_dir, robot=get_robot_spec("koch"))
    renamed = replace(SO101, joints=(replace(SO101.joints[0], name="base_yaw"), *SO101.joints[1:]))
    with pytest.raises(RobotMismatchError, match="base_yaw"):
        load_bundle(bundle_dir, robot=renamed)
    with pytest.raises(RobotMismatchError, match=r"cameras \['wrist'\]"):
        load_bundle(bundle_dir, robot=replace(SO101, cameras=SO101.cameras[:1]))
    with pytest.raises(RobotMismatchError, match="not 'koch'"):
        load_bundle(bundle_dir, robot="koch")
    assert load_bundle(bundle_dir, robot=SO101).spec == SO101
    assert load_bundle(bundle_dir, robot=SO100).spec == SO101  # same arm family: a warning only
    assert np.allclose(load_bundle(bundle_dir).spec.lower, SO101.lower)
