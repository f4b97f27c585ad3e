"""What a batch run (`gazecrop.pipeline.run`) and a streaming run (`gazecrop.pipeline.stream`) share around the
chain (`gazecrop.pipeline.compose`): the --focus table, keyed as the job names its inputs, and the job's counters.

Both run modules import this one; neither imports the other's helpers (`run` dispatches to `stream`, never the
reverse).
"""

from __future__ import annotations

from apache_beam.metrics.metric import MetricsFilter

from gazecrop.pipeline.options import RunOptions
from gazecrop.transforms.focus import read_focus_rows
from gazecrop.transforms.read import absolute_uri, input_roots
from gazecrop.transforms.select import FocusTable, resolve_focus_table


def job_input_roots(options: RunOptions, listed: list[str]) -> list[str]:
    """The input roots that outputs and relative --focus keys are named from: the patterns' and the
    listed URIs' (absolute, as `MatchImages` makes them); streaming from a subscription: the
    --input_prefix, else `gs://` (a notified object is named `<bucket>/<object>`)."""
    if options.input_subscription:
        return [options.input_prefix or "gs://"]
    return input_roots([absolute_uri(p) for p in options.inputs], [absolute_uri(u) for u in listed])


def focus_table(options: RunOptions, listed: list[str]) -> FocusTable:
    """The --focus table keyed by source URI (empty without --focus); raises `FocusTableError` naming the
    file and row of a bad table, before any work."""
    if not options.focus:
        return FocusTable()
    return resolve_focus_table(read_focus_rows(options.focus), job_input_roots(options, listed))


def counters(result) -> dict[str, int]:
    """Every `gazecrop` Beam counter of a running or finished job, by name, summed over steps (committed
    where the runner reports it, else attempted); empty where the runner reports none."""
    found = result.metrics().query(MetricsFilter().with_namespace("gazecrop"))["counters"]
    out: dict[str, int] = {}
    for r in found:
        value = r.committed if r.committed is not None else r.attempted
        out[r.key.metric.name] = out.get(r.key.metric.name, 0) + (value or 0)
    return out


def counter(result, name: str) -> int:
    """One `gazecrop` counter of a finished job (0 where the runner reported none)."""
    return counters(result).get(name, 0)
