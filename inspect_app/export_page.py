"""The Export tab: reviewed frames as a VOC batch under the labelled root (see ``inspect_app.export``)."""

from __future__ import annotations

from datetime import date

import gradio as gr
import pandas as pd

from inspect_app.context import AppContext
from inspect_app.dashboard import ALL
from inspect_app.dashboard_page import PLACEHOLDER_TIME
from inspect_app.errors import shown
from inspect_app.export import export, plan, summary
from inspect_core.store.browse import filter_choices


def build(ctx: AppContext) -> None:
    """The Export tab's components and events (inside an open ``gr.Blocks``)."""
    gr.Markdown(f"Completely reviewed frames (every box decided, or the frame marked clean) become a Pascal VOC batch in "
                f"`{ctx.labelled_root}/<batch>`, which `dataset build` imports and nightly retraining takes.")  # fmt: skip
    with gr.Row():
        name = gr.Textbox(value=date.today().isoformat(), label="Batch (folder name)", elem_id="export-name")
        since = gr.Textbox(label="Captured since", placeholder=PLACEHOLDER_TIME, elem_id="export-since")
        until = gr.Textbox(label="Captured until", placeholder=PLACEHOLDER_TIME, elem_id="export-until")
        model = gr.Dropdown([ALL, *filter_choices(ctx.engine).models], value=ALL, label="Model", elem_id="export-model")
        overwrite = gr.Checkbox(False, label="Replace the batch if it exists", elem_id="export-overwrite")
    with gr.Row():
        check = gr.Button("Check", elem_id="export-check")
        run = gr.Button("Export", variant="primary", elem_id="export-run")
    planned = gr.Markdown(elem_id="export-plan")
    result = gr.Markdown(elem_id="export-result")
    skipped = gr.Dataframe(headers=["image", "reason"], label="Left out", interactive=False, elem_id="export-skipped")
    fields = [name, since, until, model]

    def on_check(name, since, until, model):
        with shown():
            found = plan(ctx, name, since, until, model)
        return (f"{found.complete} completely reviewed frame(s) go to `{found.out}`; {found.partial} partly reviewed frame(s) wait "
                f"for their last boxes. Command line: `{found.command}`")  # fmt: skip

    def on_export(name, since, until, model, overwrite):
        with shown():
            written = export(ctx, name, since, until, model, overwrite)
        return summary(written), pd.DataFrame(written.skipped, columns=["image", "reason"])

    check.click(on_check, fields, planned, api_name="export_plan")
    run.click(on_export, [*fields, overwrite], [result, skipped], api_name="export_batch")
