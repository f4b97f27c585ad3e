"""Dead letters to error rows: what every stage's `with_exception_handling()` failures become."""

from __future__ import annotations

import apache_beam as beam

from gazecrop.records import dead_letter_message, error_row, now_utc, source_uri_of


def dead_letter_rows(dead_letter: tuple, *, stage: str) -> list[dict]:
    """Error rows for one dead letter of `with_exception_handling()`.

    A dead letter is `(element, (exception type, repr, formatted traceback))`; for a stage that works
    on batches (RunInference, crop selection) the element is a list of records, and every record of the
    failed batch gets its own row, so each input still ends as exactly one error row.
    """
    element, (exc_type, exc_repr, traceback_lines) = dead_letter
    error_type = getattr(exc_type, "__name__", str(exc_type))
    message = dead_letter_message(error_type, exc_repr, traceback_lines)
    elements = element if isinstance(element, list) else [element]
    processed_at = now_utc()
    beam.metrics.Metrics.counter("gazecrop", f"failed_{stage}").inc(len(elements))
    return [error_row(source_uri_of(e), stage, error_type, message, processed_at) for e in elements]
