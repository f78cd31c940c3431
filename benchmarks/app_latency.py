"""Inspection-app latency: the Try page end to end on the tiny model, and a Dashboard update over ~1M detections.

The app runs in this process (``inspect_app.server.serve``, as ``inspect-core app`` runs it) and is driven
through its HTTP API with the Gradio client, the way the browser drives it:

- ``try``: upload a sample frame, run ``<OD>`` on the tiny model, get the drawn image back (uploaded,
  scored, drawn, written to the app's folder and downloaded by the client). The model loads once before
  timing (the app keeps predictors). Target p95 <= 1 s on 2 cores.
- ``dashboard``: one update of every chart and table (five report queries and reviewed precision) over a
  SQLite store filled as ``store_throughput.py`` fills it (its ``fill``, 10% of stored detections operating: four cameras on two lines, two
  model versions, six classes, 180 days), with filters drawn at random per repetition (all time, a line,
  a class, a 30-day window, per day and per shift). Target p95 <= 300 ms. The same updates are also timed
  as plain function calls (``dashboard_data``), so the HTTP and Gradio overhead shows apart, and once more
  against ``inspect-core app`` started in its own process (``dashboard_app_process``): in this process
  the client's threads (event stream, JSON of 1 000-point charts) share the GIL with the server.

    python benchmarks/app_latency.py [--detections 1000000] [--repeats 40] [--out benchmarks/results/app_latency.json]

Writes ``benchmarks/results/app_latency.json`` with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import machine_info
from store_throughput import CAMERAS, CLASSES, SPAN, START, Layout, fill

from inspect_app.context import SAMPLES, AppContext
from inspect_app.dashboard import Filters, dashboard_data
from inspect_app.security import prepare_environment
from inspect_app.server import serve
from inspect_core.config import load_recipe
from inspect_core.store import open_store

RESULTS = Path(__file__).resolve().parent / "results" / "app_latency.json"
TARGETS_P95_S = {"try": 1.0, "dashboard": 0.3, "dashboard_app_process": 0.3}
SHIFTS = "report.shifts=[{name: A, start: '06:00'}, {name: B, start: '14:00'}, {name: C, start: '22:00'}]"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"n": len(ordered), "p50_s": round(statistics.median(ordered), 4),
            "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 4), "max_s": round(ordered[-1], 4)}  # fmt: skip


def dashboard_cases(rng: random.Random) -> tuple[str, Filters]:
    """A dashboard filter a plant would set: all time, a line, a class, a 30-day window, per day or per shift."""
    end = START + SPAN
    until = end - timedelta(days=rng.randint(0, 150))
    window = {"since": (until - timedelta(days=30)).isoformat(), "until": until.isoformat()}
    bucket = rng.choice(["day", "shift"])
    cases = {
        "all_time": Filters(bucket=bucket),
        "line_30d": Filters(line=rng.choice(sorted(set(CAMERAS.values()))), bucket=bucket, **window),
        "class_30d": Filters(class_name=rng.choice(list(CLASSES)), bucket=bucket, **window),
        "camera_model_30d": Filters(
            camera=rng.choice(list(CAMERAS)), model=rng.choice(["fabric-v1", "fabric-v2"]), bucket=bucket, **window
        ),
        "min_confidence_30d": Filters(min_confidence=0.8, bucket=bucket, **window),
    }
    name = rng.choice(list(cases))
    return name, cases[name]


def api_fields(flt: Filters) -> list:
    return [flt.line or "(all)", flt.camera or "(all)", flt.class_name or "(all)", flt.model or "(all)", flt.since or "", flt.until or "",
            "" if flt.min_confidence is None else str(flt.min_confidence), flt.bucket or "day"]  # fmt: skip


def time_try(client, model: str, repeats: int) -> dict[str, object]:
    from gradio_client import handle_file

    frames = sorted(SAMPLES.glob("*.jpg"))
    call = lambda path: client.predict(handle_file(str(path)), None, "<OD>", "", True, 0.3, model, api_name="/try_frame")  # noqa: E731
    call(frames[0])  # loads the model once (kept by the app)
    seconds = []
    for i in range(repeats):
        start = time.perf_counter()
        drawn, _table, _text, _summary = call(frames[i % len(frames)])
        seconds.append(time.perf_counter() - start)
        assert Path(drawn).is_file(), drawn  # the drawn frame came back
    return summary(seconds) | {"frame": "384x384 sample JPEG", "task": "<OD>"}


def time_dashboard(client, ctx: AppContext, repeats: int) -> dict[str, object]:
    rng = random.Random(1)
    client.predict(*api_fields(Filters()), api_name="/dashboard_update")  # warm the caches and prepared statements
    http, direct, per_case = [], [], {}
    for _ in range(repeats):
        name, flt = dashboard_cases(rng)
        start = time.perf_counter()
        client.predict(*api_fields(flt), api_name="/dashboard_update")
        http.append(time.perf_counter() - start)
        start = time.perf_counter()
        dashboard_data(ctx, flt)
        direct.append(time.perf_counter() - start)
        per_case.setdefault(name, []).append(http[-1])
    return {"http": summary(http), "function": summary(direct), "http_per_case": {k: summary(v) for k, v in sorted(per_case.items())}}


def time_dashboard_in_app_process(url: str, overrides: list[str], repeats: int) -> dict[str, object]:
    """The same dashboard updates against ``inspect-core app`` in its own process, as a plant runs it: the client here
    then shares no interpreter (and no GIL) with the server, as a browser does not."""
    import subprocess

    from gradio_client import Client

    port = free_port()
    command = [str(Path(sys.executable).parent / "inspect-core"), "app", "--db", url, "--model", "tiny", "--port", str(port)]
    for override in overrides:
        command += ["--set", override]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"inspect-core app did not start: {server.stderr.read() if server.stderr else ''}") from None
                time.sleep(1)
        rng = random.Random(1)  # the same filters as the in-process run
        client.predict(*api_fields(Filters()), api_name="/dashboard_update")
        http, per_case = [], {}
        for _ in range(repeats):
            name, flt = dashboard_cases(rng)
            start = time.perf_counter()
            client.predict(*api_fields(flt), api_name="/dashboard_update")
            http.append(time.perf_counter() - start)
            per_case.setdefault(name, []).append(http[-1])
        return {"http": summary(http), "http_per_case": {k: summary(v) for k, v in sorted(per_case.items())}}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=1_000_000)
    parser.add_argument("--per-image", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--operating-share", type=float, default=0.1,
                        help="share of stored detections at or above the operating threshold, as store_throughput.py models it")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from gradio_client import Client

    report: dict[str, object] = {"benchmark": "app_latency", "machine": machine_info(), "load_average_at_start": os.getloadavg(),
                                 "targets_p95_s": TARGETS_P95_S}  # fmt: skip
    uploads = prepare_environment()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'results.db'}"
        layout = Layout(images=max(1, args.detections // args.per_image), per_image=args.per_image, batch_images=1000,
                        operating_share=args.operating_share)
        engine = open_store(url)
        print(f"filling {layout.images * layout.per_image} detections", file=sys.stderr)
        report["store"] = {"backend": "sqlite", "operating_share": layout.operating_share, **fill(engine, layout, Path(tmp))}
        overrides = ["score.max_new_tokens=64", "report.timezone=Europe/Istanbul", SHIFTS]
        config = load_recipe(None, overrides)
        ctx = AppContext(engine, config, model="tiny", samples=SAMPLES)
        port = free_port()
        blocks = serve(ctx, "127.0.0.1", port, block=False, uploads=uploads)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            print("timing the Try page", file=sys.stderr)
            report["try"] = time_try(client, "--model tiny", args.repeats)
            print("timing dashboard updates", file=sys.stderr)
            report["dashboard"] = time_dashboard(client, ctx, args.repeats)
        finally:
            blocks.close()
            engine.dispose()
            shutil.rmtree(uploads, ignore_errors=True)
        print("timing dashboard updates against inspect-core app in its own process", file=sys.stderr)
        report["dashboard_app_process"] = time_dashboard_in_app_process(url, overrides, args.repeats)
    report["over_target"] = sorted(name for name, key in (("try", None), ("dashboard", "http"), ("dashboard_app_process", "http"))
                                   if (report[name][key] if key else report[name])["p95_s"] > TARGETS_P95_S[name])  # fmt: skip
    report["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
