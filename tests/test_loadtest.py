"""`python -m gazecrop.tools.loadtest` (the 20,000-image load benchmark of docs/benchmarks.md) on a small catalog:
it accounts for every input, truncated ones included, and reports memory per worker process."""

from __future__ import annotations

from gazecrop.tools.loadtest import main


def test_loadtest_accounts_for_every_input(tmp_path, capsys):
    assert main(["--images", "40", "--long_side", "96", "--broken", "10", "--workers", "2",
                 "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "accounted: 36 cropped + 4 failed = 40 of 40 inputs, 0 duplicate rows: OK" in out
    # The memory of this process and of its worker processes was sampled (inside pytest, earlier tests'
    # child processes may be sampled too: only their presence is checked).
    peak = next(line for line in out.splitlines() if line.startswith("peak RSS:"))
    assert peak.startswith("peak RSS: launcher ") and "; workers " in peak
