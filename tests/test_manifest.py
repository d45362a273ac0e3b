"""Manifests: sealed, validated, and every mismatch refused with a clear error."""
from __future__ import annotations

import json

import pytest

from ppg_edge import manifest as mf
from ppg_edge.errors import ModelError


def _model(tmp_path, content=b"TFL3-not-really-a-model"):
    path = tmp_path / "tiny.tflite"
    path.write_bytes(content)
    d = {
        "kind": "peaks", "name": "tiny", "mode": "int8", "model_file": path.name,
        "sha256": mf.sha256_file(path), "size_bytes": path.stat().st_size,
        "inputs": [mf.tensor_spec("x", [1, 250, 2], "int8", 0.01, -3)],
        "outputs": [mf.tensor_spec("y", [1, 250, 1], "int8", 1 / 256, -128)],
        "sample_rate_hz": 125, "window": 250, "hop": 125,
        "preprocessing": {"fs": 125.0, "band": [0.5, 8.0]},
        "decoder": {"threshold": 0.5},
    }
    mf.write_manifest(d, mf.manifest_path_for(path))
    return path


def test_round_trip_and_verify(tmp_path):
    path = _model(tmp_path)
    m = mf.verify_model(path)
    assert m["inputs"][0]["quantization"] == {"scale": 0.01, "zero_point": -3}
    assert m["manifest_digest"] == mf.digest(m)


def test_corrupt_model_refused(tmp_path):
    path = _model(tmp_path)
    data = bytearray(path.read_bytes())
    data[3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 .* does not match"):
        mf.verify_model(path)


def test_truncated_model_refused(tmp_path):
    path = _model(tmp_path)
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ModelError, match="corrupt or truncated"):
        mf.verify_model(path)


def test_tampered_manifest_refused(tmp_path):
    path = _model(tmp_path)
    mpath = mf.manifest_path_for(path)
    d = json.loads(mpath.read_text())
    d["decoder"]["threshold"] = 0.1
    mpath.write_text(json.dumps(d))
    with pytest.raises(ModelError, match="edited or corrupt manifest"):
        mf.verify_model(path)


def test_manifest_of_another_model_refused(tmp_path):
    path = _model(tmp_path)
    other = tmp_path / "other.tflite"
    other.write_bytes(path.read_bytes())
    with pytest.raises(ModelError, match="mismatched model"):
        mf.verify_model(other, mf.read_manifest(mf.manifest_path_for(path)))


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"schema": 1}', "missing field"),
])
def test_broken_manifest_files(tmp_path, text, match):
    p = tmp_path / "m.json"
    p.write_text(text)
    with pytest.raises(ModelError, match=match):
        mf.read_manifest(p)


def test_missing_manifest(tmp_path):
    p = tmp_path / "lonely.tflite"
    p.write_bytes(b"x")
    with pytest.raises(ModelError, match="manifest not found"):
        mf.verify_model(p)


def test_unsealed_and_wrong_schema(tmp_path):
    path = _model(tmp_path)
    d = mf.read_manifest(mf.manifest_path_for(path))
    del d["manifest_digest"]
    with pytest.raises(ModelError, match="unsigned"):
        mf.validate(d)
    d["schema"] = 99
    with pytest.raises(ModelError, match="schema 99"):
        mf.validate(mf.seal(d))
