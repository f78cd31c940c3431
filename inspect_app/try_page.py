"""Try: one frame through a model, nothing written anywhere.

The pure part (:func:`try_frame`) takes plain values and returns plain values, so it is tested without a
browser and timed by the benchmark through the same HTTP API the page calls. Uploads arrive as files
(``gr.File``), not as images Gradio decoded: the bytes go through the checks scoring applies
(:func:`inspect_core.inference.predict.load_image`: decode budget, decompression bombs, non-images), and a
refused file is a message on the page, not a crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from inspect_app.context import AppContext
from inspect_core.errors import UsageError

# Picker label -> the predictor's task.
TASKS = {"<OD>": "od", "<DENSE_REGION_CAPTION>": "dense", "<CAPTION_TO_PHRASE_GROUNDING>": "grounding"}
# The model sees a square: a strip 3x longer than high squeezed into it loses two thirds of its resolution along
# the web, where a 2 px broken yarn vanishes. From this ratio on the frame is tiled (overlapping squares) instead.
LINE_SCAN_ASPECT = 3.0
TABLE_COLUMNS = ["class", "confidence", "x1", "y1", "x2", "y2"]


@dataclass(frozen=True)
class TryResult:
    image: np.ndarray  # RGB with the boxes drawn
    table: pd.DataFrame  # TABLE_COLUMNS, most confident first
    text: str  # the caption of a text task ("" for <OD>)
    summary: str  # what ran and how long it took


def needs_tiles(width: int, height: int, always: bool = False) -> bool:
    """Tile a frame when the recipe says so or when it is a line-scan strip (aspect ratio at least ``LINE_SCAN_ASPECT``)."""
    return always or max(width, height) >= LINE_SCAN_ASPECT * min(width, height)


def detections_table(detections) -> pd.DataFrame:
    """The boxes of a prediction as the page's table: class, confidence (3 decimals) and the box in image pixels."""
    rows = [[d.label, round(d.score, 3), *(round(v, 1) for v in d.box)] for d in detections]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def try_frame(
    ctx: AppContext, *, upload: str | None, picked: str | None, task: str, phrase: str | None, operating: bool, threshold: float,
    model: str,
) -> TryResult:  # fmt: skip
    """Run ``model`` on the uploaded file (wins) or the picked image; boxes at or above the operating thresholds or ``threshold``.

    Raises :class:`UsageError` (nothing chosen, an unknown task or model, grounding without a phrase) or
    :class:`inspect_core.errors.BadInputError` (an upload that is not a usable image), each naming the problem.
    """
    from inspect_core.inference.predict import load_image

    started = time.perf_counter()
    if task not in TASKS:
        raise UsageError(f"task {task!r}: pick one of {', '.join(TASKS)}")
    if TASKS[task] == "grounding" and not (phrase or "").strip():
        raise UsageError("<CAPTION_TO_PHRASE_GROUNDING> needs a phrase to find, e.g. 'a hole'")
    if upload:
        name = Path(upload).name  # Gradio keeps the uploaded file's own name inside its private upload folder
        pixels = load_image(upload, f"upload {name}")
    elif picked:
        pixels, name = ctx.load(picked)
    else:
        raise UsageError("upload an image or pick one first")
    predictor = ctx.predictor(model)
    height, width = pixels.shape[:2]
    tiled = needs_tiles(width, height, ctx.config.score.tile)
    prediction = predictor.predict([pixels], TASKS[task], phrase if TASKS[task] == "grounding" else None,
                                   None if operating else float(threshold), tiled)[0]  # fmt: skip
    drawn = prediction.draw(pixels)
    elapsed = time.perf_counter() - started
    rule = "operating thresholds" if operating else f"confidence >= {float(threshold):.2f}"
    summary = (
        f"{name}: {width}x{height}{', tiled' if tiled else ''}; {len(prediction.detections)} box(es) at {rule}; "
        f"model {prediction.seconds:.2f} s, total {elapsed:.2f} s"
    )
    return TryResult(drawn, detections_table(prediction.detections), prediction.text or "", summary)


def build(ctx: AppContext, blocks) -> None:
    """The Try tab's components and events (inside an open ``gr.Blocks``); ``blocks`` gets the on-load refresh of the pickers."""
    import gradio as gr

    from inspect_app.errors import shown

    images = ctx.image_choices()
    models = list(ctx.model_choices())
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Upload an image", file_types=["image"], type="filepath", elem_id="try-upload")
            picked = gr.Dropdown(choices=[(label, key) for key, label in images.items()], value=next(iter(images), None),
                                 label="...or pick a frame (store or samples)", elem_id="try-pick")  # fmt: skip
            task = gr.Radio(list(TASKS), value="<OD>", label="Task", elem_id="try-task")
            phrase = gr.Textbox(label="Phrase to find (grounding)", placeholder="a hole", elem_id="try-phrase")
            operating = gr.Checkbox(value=True, label="Model's operating thresholds (per class)", elem_id="try-operating")
            threshold = gr.Slider(0.0, 1.0, value=0.3, step=0.01, label="...or keep boxes with confidence at least",
                                  interactive=False, elem_id="try-threshold")  # fmt: skip
            model = gr.Dropdown(choices=models, value=models[0], label="Model", elem_id="try-model")
            run = gr.Button("Detect", variant="primary", elem_id="try-run")
        with gr.Column(scale=2):
            drawn = gr.Image(label="Boxes", type="numpy", interactive=False, elem_id="try-image")
            summary = gr.Markdown(elem_id="try-summary")
            caption = gr.Textbox(label="Caption (text tasks)", interactive=False, elem_id="try-caption")
            table = gr.Dataframe(headers=TABLE_COLUMNS, label="Detections", interactive=False, elem_id="try-table")

    def run_try(upload, picked, task, phrase, operating, threshold, model):
        with shown():
            result = try_frame(ctx, upload=upload, picked=picked, task=task, phrase=phrase, operating=operating, threshold=threshold,
                               model=model)  # fmt: skip
        return result.image, result.table, result.text, result.summary

    def reload():
        """On page load: the store's newest frames and the registry as they are now (a model promoted since start is offered).
        Only the choices change: what the person already picked stays (the load may finish after a first click)."""
        images = [(label, key) for key, label in ctx.image_choices().items()]
        return gr.Dropdown(choices=images), gr.Dropdown(choices=list(ctx.model_choices()))

    blocks.load(reload, None, [picked, model], api_name=False)
    operating.change(lambda on: gr.update(interactive=not on), operating, threshold, api_name=False)
    run.click(run_try, [upload, picked, task, phrase, operating, threshold, model], [drawn, table, caption, summary], api_name="try_frame")
