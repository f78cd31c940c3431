"""Build the app's pages into one Gradio Blocks and serve it.

``serve`` is what ``inspect-core app`` runs: environment first (``security.prepare_environment``: no
analytics, a private upload folder), then Gradio, bound as checked (``security.check_binding``), with
login when credentials are given, no share link, no extra served folders (``allowed_paths`` empty), and an
upload size cap.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from inspect_app.context import AppContext
from inspect_app.security import Credentials, check_binding, prepare_environment

MAX_UPLOAD = "200mb"  # a 16k x 6k line-scan PNG is ~100 MB; the decode budget (100 megapixels) is checked after upload
TITLE = "inspect-core"


def build_app(ctx: AppContext):
    """The app's Blocks: Try, Dashboard, Review and Export tabs."""
    import gradio as gr

    from inspect_app import dashboard_page, export_page, review_page, try_page

    with gr.Blocks(title=TITLE, analytics_enabled=False) as blocks:
        gr.Markdown(f"## {TITLE} · fabric defect inspection · store `{ctx.engine.url.render_as_string(hide_password=True)}`")
        with gr.Tabs():
            with gr.Tab("Try", id="try", elem_id="tab-try"):
                try_page.build(ctx, blocks)
            with gr.Tab("Dashboard", id="dashboard", elem_id="tab-dashboard"):
                dashboard_page.build(ctx, blocks)
            with gr.Tab("Review", id="review", elem_id="tab-review"):
                review_page.build(ctx)
            with gr.Tab("Export", id="export", elem_id="tab-export"):
                export_page.build(ctx)
    return blocks


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def serve(ctx: AppContext, host: str = "127.0.0.1", port: int = 7860, logins: Credentials | None = None, block: bool = True,
          uploads: Path | None = None):  # fmt: skip
    """Launch the app on ``host:port``; with ``block`` False return the running Blocks (tests, benchmarks; ``close()`` it).

    ``uploads`` is the private folder from ``prepare_environment`` (made here when None) and is removed when
    a blocking serve ends.
    """
    check_binding(host, logins or [])
    uploads = uploads if uploads is not None else prepare_environment()
    blocks = build_app(ctx)
    if block:  # a service manager's stop (SIGTERM) closes the server as Ctrl-C does, and the private folder is removed
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        blocks.queue(default_concurrency_limit=2)  # two cores: more at once only queues inside the model lock
        blocks.launch(server_name=host, server_port=port, auth=logins or None, share=False, ssr_mode=False, allowed_paths=[],
                      max_file_size=MAX_UPLOAD, show_error=False, prevent_thread_lock=not block, quiet=not block, mcp_server=False,
                      pwa=False, inbrowser=False)  # fmt: skip
    finally:
        if block:
            shutil.rmtree(uploads, ignore_errors=True)
    return blocks
