"""The hostile suite: inputs and faults a plant will hit, each a permanent test (issue 12).

Every case is marked, so the suite can count itself:

- ``@pytest.mark.hostile_input`` on a test (or one ``pytest.param(..., marks=...)``) is one hostile
  input; on a hypothesis test, ``@pytest.mark.hostile_input(examples=N)`` counts its N generated inputs
  (set ``max_examples`` to the same N).
- ``@pytest.mark.injected_fault`` is one injected fault (kill -9, database down, disk full, ...).

At the end of a run that collected hostile tests, the terminal summary says how many inputs and faults
ran and how many passed: the figures the README's reliability section quotes.
"""

from __future__ import annotations

import pytest

_counts: dict[str, dict[str, int]] = {"hostile_input": {"ran": 0, "passed": 0}, "injected_fault": {"ran": 0, "passed": 0}}


def _weight(item: pytest.Item, name: str) -> int:
    marker = item.get_closest_marker(name)
    if marker is None:
        return 0
    return int(marker.kwargs.get("examples", 1))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.skipped):
        for name in _counts:
            weight = _weight(item, name)
            if weight and not report.skipped:
                _counts[name]["ran"] += weight
                _counts[name]["passed"] += weight if report.passed else 0
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    inputs, faults = _counts["hostile_input"], _counts["injected_fault"]
    if inputs["ran"] or faults["ran"]:
        passed = f"{inputs['passed']}/{inputs['ran']} hostile inputs and {faults['passed']}/{faults['ran']} injected faults passed"
        terminalreporter.write_line(f"hostile suite: {passed}")
