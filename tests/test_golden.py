"""The crops and metadata rows of the fixture photos are byte-for-byte those recorded before the code moved
into the `gazecrop` package (tests/golden.py; the manifest tests/data/golden_outputs.json)."""

import json

import golden


def test_outputs_are_byte_identical_to_the_manifest(capsys):
    assert golden.MANIFEST.exists()
    expected = json.loads(golden.MANIFEST.read_text())
    assert {name: len(runs["crops"]) for name, runs in expected.items()} == {"default": 84, "fast": 36}
    assert golden.main([]) == 0, capsys.readouterr().out
