"""The crops and metadata rows of the fixture photos are byte-for-byte those of the manifest
(tests/golden.py; tests/data/golden_outputs.json): first recorded before the code moved into the `gazecrop`
package, re-recorded only in commits that change crops on purpose (docs/testing.md)."""

import json

import golden


def test_outputs_are_byte_identical_to_the_manifest(capsys):
    assert golden.MANIFEST.exists()
    expected = json.loads(golden.MANIFEST.read_text())
    # 12 photos: default 4 ratios x up to 2 candidates (a second window overlapping the first too much is
    # not offered) plus saliency maps; fast 2 ratios, PNG, plus saliency maps
    assert {name: len(runs["crops"]) for name, runs in expected.items()} == {"default": 86, "fast": 36}
    assert golden.main([]) == 0, capsys.readouterr().out
