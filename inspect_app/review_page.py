"""The Review tab: the queue, one frame in an annotator, verdict buttons, drawn boxes, mark clean (see ``inspect_app.review``)."""

from __future__ import annotations

import gradio as gr
from gradio_image_annotation import image_annotator

from inspect_app.context import AppContext
from inspect_app.dashboard import ALL, Filters
from inspect_app.dashboard_page import PLACEHOLDER_TIME
from inspect_app.errors import shown
from inspect_app.review import (
    DETECTION_TABLE,
    QUEUE_TABLE,
    SHOW,
    FrameView,
    Saved,
    edits_to_actions,
    load_frame,
    queue,
    save,
    verdict_actions,
)
from inspect_core.errors import UsageError
from inspect_core.store.browse import filter_choices
from inspect_core.store.reviews import ReviewAction


def reviewer_name(typed: str | None, request: gr.Request | None) -> str:
    """The logged-in user when the app has a login (a reviewer cannot sign as someone else), else the name typed."""
    logged_in = getattr(request, "username", None) if request is not None else None
    name = (logged_in or typed or "").strip()
    if not name:
        raise UsageError("enter your name as reviewer first: every review is stored with who made it")
    return name


def _shown_frame(view: FrameView | None, message: str = ""):
    """What the frame's components show for ``view`` (nothing chosen: empty)."""
    if view is None:
        return None, gr.update(value=None), gr.update(value=None), "", message, [], ""
    annotator = image_annotator(value=view.annotator_value(), label_list=view.classes, label_colors=view.label_colours())
    return view, annotator, view.table, view.title, message, [], ""


def build(ctx: AppContext) -> None:
    """The Review tab's components and events (inside an open ``gr.Blocks``)."""
    choices = filter_choices(ctx.engine)
    with gr.Row():
        reviewer = gr.Textbox(label="Reviewer", placeholder="your name (with a login: the login name)", elem_id="review-reviewer")
        show = gr.Radio(list(SHOW), value="to review", label="Show", elem_id="review-show")
        line = gr.Dropdown([ALL, *choices.lines], value=ALL, label="Line", elem_id="review-line")
        class_name = gr.Dropdown([ALL, *choices.classes], value=ALL, label="Class", elem_id="review-class")
        model = gr.Dropdown([ALL, *choices.models], value=ALL, label="Model", elem_id="review-model")
        since = gr.Textbox(label="Since", placeholder=PLACEHOLDER_TIME, elem_id="review-since")
        load = gr.Button("Load queue", variant="primary", elem_id="review-load")
    gr.Markdown("Unreviewed frames first, then the one whose box is closest to its operating threshold, then the newest. "
                "Choose a row to review that frame.")  # fmt: skip
    queue_table = gr.Dataframe(headers=QUEUE_TABLE, interactive=False, max_height=300, elem_id="review-queue")
    title = gr.Markdown(elem_id="review-title")
    status = gr.Markdown(elem_id="review-status")
    view_state = gr.State(None)
    chosen = gr.State([])
    keys = gr.State([])
    with gr.Row():
        with gr.Column(scale=3):
            annotator = image_annotator(
                label="Frame: draw a missing box (then choose its class), move, relabel or delete boxes; then Save boxes",
                label_list=choices.classes or ["defect"], sources=[], show_clear_button=False, show_remove_button=True,
                elem_id="review-annotator",
            )  # fmt: skip
            save_boxes = gr.Button("Save boxes", elem_id="review-save-boxes")
        with gr.Column(scale=2):
            detections = gr.Dataframe(headers=DETECTION_TABLE, label="The model's boxes (choose a row)", interactive=False,
                                      elem_id="review-detections")  # fmt: skip
            chosen_text = gr.Markdown(elem_id="review-chosen")
            with gr.Row():
                accept = gr.Button("Accept", elem_id="review-accept")
                reject = gr.Button("Reject (false positive)", elem_id="review-reject")
            with gr.Row():
                new_class = gr.Dropdown(
                    choices.classes, value=None, label="Change class to", allow_custom_value=True, elem_id="review-new-class"
                )
                relabel = gr.Button("Relabel", elem_id="review-relabel")
            accept_rest = gr.Button("Accept all undecided boxes", elem_id="review-accept-rest")
            clean = gr.Button("Mark frame clean (no defect)", variant="stop", elem_id="review-clean")
            next_frame = gr.Button("Next frame", variant="primary", elem_id="review-next")

    frame_outputs = [view_state, annotator, detections, title, status, chosen, chosen_text]

    def load_queue(show, line, class_name, model, since):
        with shown():
            table = queue(ctx, Filters(line=line, class_name=class_name, model=model, since=since), show)
        return table, [(int(r.image_id), int(r.model_version_id)) for r in table.itertuples()]

    load.click(load_queue, [show, line, class_name, model, since], [queue_table, keys], api_name="review_queue")

    def open_frame(event: gr.SelectData):
        row = event.row_value or []
        with shown():
            if len(row) < 2:
                raise UsageError("choose a frame's row in the queue")
            return _shown_frame(load_frame(ctx, int(row[0]), int(row[1])))

    queue_table.select(open_frame, None, frame_outputs, api_name=False)

    def go_next(view: FrameView | None, keys: list):
        with shown():
            if not keys:
                raise UsageError("load the queue first")
            here = (view.image_id, view.model_version_id) if view is not None else None
            position = keys.index(here) + 1 if here in keys else 0
            if position >= len(keys):
                raise UsageError("that was the last frame of the queue: load it again for more")
            return _shown_frame(load_frame(ctx, *keys[position]))

    next_frame.click(go_next, [view_state, keys], frame_outputs, api_name=False)

    def choose(view: FrameView | None, event: gr.SelectData):
        row = event.row_value or []
        if view is None or not row:
            return [], ""
        return [int(row[0])], f"Chosen: box {int(row[0])} ({row[1]} {row[2]}, {row[4]})"

    detections.select(choose, [view_state], [chosen, chosen_text], api_name=False)

    def written(view: FrameView | None, reviewer: str, actions_of, request: gr.Request):
        with shown():
            if view is None:
                raise UsageError("choose a frame in the queue first")
            name = reviewer_name(reviewer, request)
            result: Saved = save(ctx, view, name, actions_of(view))
        if result.stale:
            gr.Warning(result.message)
        return _shown_frame(result.view, result.message)

    def on_verdict(kind: str):
        def handler(view, reviewer, ids, new_class, request: gr.Request):
            return written(view, reviewer, lambda v: verdict_actions(v, kind, ids, new_class), request)

        return handler

    inputs = [view_state, reviewer, chosen, new_class]
    accept.click(on_verdict("accept"), inputs, frame_outputs, api_name=False)
    reject.click(on_verdict("reject"), inputs, frame_outputs, api_name=False)
    relabel.click(on_verdict("relabel"), inputs, frame_outputs, api_name=False)

    def on_accept_rest(view, reviewer, request: gr.Request):
        return written(view, reviewer, lambda v: verdict_actions(v, "accept", []), request)

    accept_rest.click(on_accept_rest, [view_state, reviewer], frame_outputs, api_name=False)

    def on_clean(view, reviewer, request: gr.Request):
        return written(view, reviewer, lambda _v: [ReviewAction("clean")], request)

    clean.click(on_clean, [view_state, reviewer], frame_outputs, api_name=False)

    def on_save_boxes(view, reviewer, value, request: gr.Request):
        return written(view, reviewer, lambda v: edits_to_actions(v, (value or {}).get("boxes") or []), request)

    save_boxes.click(on_save_boxes, [view_state, reviewer, annotator], frame_outputs, api_name=False)
