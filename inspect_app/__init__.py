"""The inspection web app (Gradio) over inspect-core and its results store: ``inspect-core app``.

A thin layer outside the library: the library (``inspect_core``) never imports it nor Gradio; the command
``inspect-core app`` (``inspect_core/cli/app.py``) imports it when run. Pages:

- ``try_page``: one frame through a model (upload or pick), boxes, table, caption, timing; writes nothing.
- ``dashboard`` / ``dashboard_page``: the report queries as charts, and the frames behind a chosen bar or point.

``security`` decides who may connect and prepares Gradio's environment; ``context`` holds the store, the
recipe, the models on offer and the images one may pick (by key, never by path); ``server`` builds and launches.
"""
