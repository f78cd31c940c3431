"""The Dashboard tab: filters, four charts, two tables, and the frames behind what is chosen (see ``inspect_app.dashboard``)."""

from __future__ import annotations

import gradio as gr

from inspect_app.context import AppContext
from inspect_app.dashboard import ALL, Filters, dashboard_data, frames_behind, parse_confidence
from inspect_app.errors import shown
from inspect_app.frames import FRAME_TABLE_COLUMNS
from inspect_core.store.browse import filter_choices

PLACEHOLDER_TIME = "7d, 24h, 2026-11-01 or 2026-11-01T06:00 (plant time)"


def _filters(line, camera, class_name, model, since, until, min_confidence, bucket) -> Filters:
    return Filters(line, camera, class_name, model, since, until, parse_confidence(min_confidence), bucket)


def build(ctx: AppContext, blocks: gr.Blocks) -> None:
    """The Dashboard tab's components and events (inside an open ``gr.Blocks``); ``blocks`` gets the on-load refresh."""

    choices = filter_choices(ctx.engine)
    buckets = ["day", "shift"] if ctx.config.report.shifts else ["day"]
    with gr.Row():
        line = gr.Dropdown([ALL, *choices.lines], value=ALL, label="Line", elem_id="dash-line")
        camera = gr.Dropdown([ALL, *choices.cameras], value=ALL, label="Camera", elem_id="dash-camera")
        class_name = gr.Dropdown([ALL, *choices.classes], value=ALL, label="Class", elem_id="dash-class")
        model = gr.Dropdown([ALL, *choices.models], value=ALL, label="Model", elem_id="dash-model")
    with gr.Row():
        since = gr.Textbox(label="Since", placeholder=PLACEHOLDER_TIME, elem_id="dash-since")
        until = gr.Textbox(label="Until (exclusive)", placeholder=PLACEHOLDER_TIME, elem_id="dash-until")
        min_confidence = gr.Textbox(label="Min confidence", placeholder="empty: the operating detections; 0.5: every stored one >= 0.5",
                                    elem_id="dash-min-confidence")  # fmt: skip
        bucket = gr.Radio(buckets, value=ctx.config.report.bucket, label="Per", elem_id="dash-bucket")
        update = gr.Button("Update", variant="primary", elem_id="dash-update")
    note = gr.Markdown(elem_id="dash-note")
    with gr.Row():
        per_line = gr.BarPlot(x="line", y="defect_rate", y_lim=[0, 1], y_axis_format=".0%", title="Defect rate per line",
                              elem_id="dash-per-line", tooltip="all")  # fmt: skip
        rate_over_time = gr.ScatterPlot(x="bucket", y="defect_rate", color="line", y_lim=[0, 1], y_axis_format=".0%",
                                        title="Defect rate per line over time", elem_id="dash-rate-time", tooltip="all")  # fmt: skip
    with gr.Row():
        defects_over_time = gr.BarPlot(x="bucket", y="detections", color="class", title="Defects per class over time",
                                       elem_id="dash-defects-time", tooltip="all")  # fmt: skip
        histogram = gr.BarPlot(x="confidence", y="detections", color="class", title="Confidence histogram (bin start)",
                               elem_id="dash-histogram", tooltip="all")  # fmt: skip
    with gr.Row():
        lines_table = gr.Dataframe(label="Per line (choose a row to list its frames)", interactive=False, elem_id="dash-lines-table")
        classes_table = gr.Dataframe(label="Per class", interactive=False, elem_id="dash-classes-table")
        precision_table = gr.Dataframe(label="Reviewed precision per class (accepted / reviewed)", interactive=False,
                                       elem_id="dash-precision-table")  # fmt: skip
    gr.Markdown("Drag across bars or points of a chart (or choose a row of the line table) to list the frames behind them.")
    frames_title = gr.Markdown(elem_id="dash-frames-title")
    frames_gallery = gr.Gallery(label="Frames", columns=6, height=420, object_fit="contain", elem_id="dash-frames",
                                interactive=False)  # fmt: skip
    frames_table = gr.Dataframe(headers=FRAME_TABLE_COLUMNS, label="Frames", interactive=False, elem_id="dash-frames-table")

    fields = [line, camera, class_name, model, since, until, min_confidence, bucket]

    def refresh(*values):
        with shown():
            data = dashboard_data(ctx, _filters(*values))
        lines = data.per_line.assign(defect_rate=(100 * data.per_line["defect_rate"]).round(1))
        lines = lines.rename(columns={"defect_rate": "defect_rate_%"})
        return (
            data.per_line, gr.ScatterPlot(data.rate_over_time, sort=data.buckets), gr.BarPlot(data.defects_over_time, sort=data.buckets),
            data.histogram, lines, data.classes, data.precision, data.note,
        )  # fmt: skip

    outputs = [per_line, rate_over_time, defects_over_time, histogram, lines_table, classes_table, precision_table, note]
    update.click(refresh, fields, outputs, api_name="dashboard_update")
    for field in (line, camera, class_name, model, bucket):
        field.change(refresh, fields, outputs, api_name=False)
    for field in (since, until, min_confidence):
        field.submit(refresh, fields, outputs, api_name=False)

    def reload(*values):
        """On page load: filter choices as the store holds them now (a new line appears without a restart), then the charts."""
        found = filter_choices(ctx.engine)
        lists = (found.lines, found.cameras, found.classes, found.models)
        return (*(gr.Dropdown(choices=[ALL, *options]) for options in lists), *refresh(*values))

    blocks.load(reload, fields, [line, camera, class_name, model, *outputs], api_name=False)

    def chosen(chart: str):
        def handler(line, camera, class_name, model, since, until, min_confidence, bucket, event: gr.SelectData):
            with shown():
                found = frames_behind(ctx, _filters(line, camera, class_name, model, since, until, min_confidence, bucket), chart,
                                      event.value)  # fmt: skip
            return found.gallery, found.table, found.title

        return handler

    def chosen_row(line, camera, class_name, model, since, until, min_confidence, bucket, event: gr.SelectData):
        row = event.row_value or []
        with shown():
            found = frames_behind(ctx, _filters(line, camera, class_name, model, since, until, min_confidence, bucket), "line",
                                  [row[0]] if row else [])  # fmt: skip
        return found.gallery, found.table, found.title

    frame_outputs = [frames_gallery, frames_table, frames_title]
    for plot, chart in ((per_line, "line"), (rate_over_time, "time"), (defects_over_time, "time"), (histogram, "histogram")):
        plot.select(chosen(chart), fields, frame_outputs, api_name=False)
    lines_table.select(chosen_row, fields, frame_outputs, api_name=False)
