"""Expected errors become a message on the page; the app keeps running.

The library raises typed errors (``inspect_core.errors``) whose text names the file or field and the
problem: a bad upload, a model folder that is gone, a date typed wrong, the store down. Those are shown as
they are (``gr.Error``, a notice in the browser). Anything else is a bug: Gradio reports it as an error
without its details (``show_error`` is off, so internals do not reach a browser) and the server logs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from inspect_core.errors import BadInputError, EnvironmentFailure, UsageError

EXPECTED = (UsageError, BadInputError, EnvironmentFailure, FileNotFoundError)


@contextmanager
def shown() -> Iterator[None]:
    """Turn an expected error raised inside into ``gr.Error`` with the same message."""
    import gradio as gr

    from inspect_core.store import StoreUnavailableError

    try:
        yield
    except (*EXPECTED, StoreUnavailableError) as error:
        raise gr.Error(str(error), duration=None) from None
