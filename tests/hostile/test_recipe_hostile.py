"""Hostile recipes (issue 12): YAML bombs, duplicate keys, bad bytes, markup in messages, fuzzed keys and values.

Every case goes through the command line the way a user runs it (``main([...])`` returning the exit
code, or the ``inspect-core`` executable when a runaway must be caught with a timeout and a memory
limit): a recipe is either accepted (exit 0) or refused as a usage error (exit 2) with a message that
names the file (or the ``--set`` item), the line or key, and the problem. Never a traceback (exit 1),
never a hang.
"""

from __future__ import annotations

import resource
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspect_core.cli import main
from inspect_core.config import InspectConfig
from inspect_core.config.safe_yaml import safe_yaml_load
from inspect_core.errors import BadInputError

REPO = Path(__file__).resolve().parents[2]
EXECUTABLE = REPO / ".venv" / "bin" / "inspect-core"
MEMORY_LIMIT = 3 << 30  # bytes of address space the CLI may use: a bomb being expanded runs into it within seconds


def show(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``inspect-core config show ARGS`` in this process: exit code, stdout, stderr."""
    code = main(["config", "show", *args])
    out, err = capsys.readouterr()
    return code, out, err


def recipe(tmp_path: Path, text: str | bytes, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def laughs(levels: int = 9, width: int = 9) -> str:
    """The classic billion laughs: each anchor a list of ``width`` aliases to the one before, ``width**levels`` strings in all."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def limited_cli(*args: str, timeout: float = 60) -> tuple[int, str, float]:
    """The executable under an address-space limit and a timeout: exit code, stderr, seconds taken."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    started = time.monotonic()
    done = subprocess.run([str(EXECUTABLE), *args], capture_output=True, text=True, timeout=timeout, preexec_fn=limit_memory)
    return done.returncode, done.stderr, time.monotonic() - started


# --- 1. YAML bombs: aliases, expansion, recursion, depth, size -------------------------------------------


@pytest.mark.hostile_input
@pytest.mark.parametrize("shape", ["sequence", "mapping", "under-a-section"])
def test_billion_laughs_is_refused_quickly_within_bounded_memory(tmp_path: Path, shape: str) -> None:
    text = {
        "sequence": laughs(),
        "mapping": "a0: &a0 {x: lol, y: lol, z: lol}\n"
        + "".join(f"a{n}: &a{n} {{x: *a{n - 1}, y: *a{n - 1}, z: *a{n - 1}}}\n" for n in range(1, 25)),
        "under-a-section": "train:\n  lr: 0.1\nscore:\n  class_thresholds:\n" + "".join(f"    {line}\n" for line in laughs().splitlines()),
    }[shape]
    path = recipe(tmp_path, text)
    code, err, seconds = limited_cli("config", "show", "--config", str(path))
    assert code == 2, err
    assert f"{path}: line " in err and "expands to more than" in err and "Traceback" not in err
    assert seconds < 30


@pytest.mark.hostile_input
def test_billion_laughs_in_a_set_value_is_refused() -> None:
    levels = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"&a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    code, err, seconds = limited_cli("config", "show", "--set", f"score.class_thresholds=[{', '.join(levels)}]")
    assert code == 2, err
    assert "--set score.class_thresholds=[&a0 [lol" in err and "expands to more than" in err and seconds < 30
    assert "Traceback" not in err


@pytest.mark.hostile_input
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &a [*a]\n", "recursive alias"),
        ("a: &a {b: *a}\n", "recursive alias"),
        ("train: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than"),
        ("train:\n" + "".join(" " * (2 * n) + f"  k{n}:\n" for n in range(200)), "nested deeper than"),
        ("x: &x lol\n" + "".join(f"y{n}: *x\n" for n in range(1500)), "more than 1000 aliases"),
    ],
    ids=["recursive-sequence", "recursive-mapping", "deep-flow", "deep-block", "many-aliases"],
)
def test_runaway_structures_are_refused_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str) -> None:
    path = recipe(tmp_path, text)
    code, _out, err = show(capsys, "--config", str(path))
    assert code == 2, err
    assert err.startswith(f"error: {path}: ") and problem in err


@pytest.mark.hostile_input
def test_an_oversized_recipe_is_refused_before_it_is_parsed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = recipe(tmp_path, "train:\n  lr: 0.1\n" + "# padding\n" * 200_000)
    code, _out, err = show(capsys, "--config", str(path))
    assert code == 2 and f"{path}: larger than 1048576 bytes" in err


@pytest.mark.hostile_input
def test_an_endless_device_as_recipe_is_refused_quickly(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, _out, err = show(capsys, "--config", "/dev/zero")
    assert code == 2 and "/dev/zero: larger than" in err and time.monotonic() - started < 10


@pytest.mark.hostile_input
def test_anchors_and_merge_keys_within_limits_still_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "recipe.yaml"
    text = "train:\n  <<: &base {epochs: 3, lr: 0.5}\n  lr: 0.002\nscore:\n  class_thresholds: &t {hole: 0.4}\n"
    path.write_text(text)
    code, out, err = show(capsys, "--config", str(path), "--json")
    assert code == 0, err
    assert '"epochs": 3' in out and '"lr": 0.002' in out and '"hole": 0.4' in out
    assert safe_yaml_load("base: &b {epochs: 3, lr: 0.5}\ntrain: {<<: *b, lr: 0.1}\n", path)["train"] == {"epochs": 3, "lr": 0.1}


# --- 2. duplicate keys -----------------------------------------------------------------------------------


@pytest.mark.hostile_input
@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        ("train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n", "train.lr", 4, 2),
        ("train:\n  lr: 0.1\nscore:\n  batch_size: 2\ntrain:\n  epochs: 3\n", "train", 5, 1),
        ("train:\n  lr: 0.1\n  'lr': 0.2\n", "train.lr", 3, 2),
        ("score:\n  class_thresholds: {hole: 0.2, stain: 0.3, hole: 0.9}\n", "score.class_thresholds.hole", 2, 2),
        ("augment:\n  extra:\n    - name: Blur\n      params: {blur_limit: 3, blur_limit: 5}\n", "augment.extra.0.params.blur_limit", 4, 4),
    ],
    ids=["nested", "section", "quoted", "flow", "in-a-list"],
)
def test_duplicate_keys_are_refused_with_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str, line: int, first: int
) -> None:
    path = recipe(tmp_path, text)
    code, _out, err = show(capsys, "--config", str(path))
    assert code == 2, err
    assert f"{path}: line {line}: duplicate key '{key}' (first given at line {first})" in err


# --- 3. bytes that are not UTF-8 text --------------------------------------------------------------------


@pytest.mark.hostile_input
@pytest.mark.parametrize(
    ("raw", "byte", "position", "line"),
    [
        ("train:\n  lr: 0.1\n# caf\xe9\n".encode("latin-1"), "0xe9", 22, 3),
        ("train: {}\n".encode("utf-16"), "0xff", 0, 1),
        (b"train:\n  lr: \x80\n", "0x80", 13, 2),
        (b"train:\n  output_dir: runs/\xe2\x82\n", "0xe2", 26, 2),
        (b"\xc0\xaftrain: {}\n", "0xc0", 0, 1),
    ],
    ids=["latin-1", "utf-16", "stray-continuation", "truncated-sequence", "overlong-slash"],
)
def test_non_utf8_recipes_name_the_file_and_the_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], raw: bytes, byte: str, position: int, line: int
) -> None:
    path = recipe(tmp_path, raw)
    code, _out, err = show(capsys, "--config", str(path))
    assert code == 2, err
    assert f"{path}: not UTF-8 text: byte {byte} at byte position {position} (line {line})" in err


@pytest.mark.hostile_input
def test_control_characters_are_refused_with_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = recipe(tmp_path, b"train:\n  lr: 0.1\x00\n")
    code, _out, err = show(capsys, "--config", str(path))
    assert code == 2 and f"{path}: line 2: character 0x0000 at position 16 is not allowed in YAML" in err


@pytest.mark.hostile_input
def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = recipe(tmp_path, "\ufefftrain:\n  lr: 0.003\n".encode())
    code, out, err = show(capsys, "--config", str(path), "--json")
    assert code == 0, err
    assert '"lr": 0.003' in out


# --- 4. brackets in messages are shown, not eaten as terminal markup ---------------------------------------


@pytest.mark.hostile_input
@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--set", "train.[bold]lr[/bold]=1"], "--set train.[bold]lr[/bold]=1: train.[bold]lr[/bold]: unknown key"),
        (["--set", "dataset.tasks=[od, od]"], "dataset.tasks: Value error, tasks are repeated: ['od', 'od']"),
        (["--set", "[red]=1"], "[red]: unknown key"),
    ],
    ids=["key", "list-value", "whole-key"],
)
def test_bracketed_text_in_set_messages_is_literal(capsys: pytest.CaptureFixture[str], args: list[str], shown: str) -> None:
    code, _out, err = show(capsys, *args)
    assert code == 2, err
    assert shown in err


@pytest.mark.hostile_input
def test_bracketed_keys_and_file_names_in_recipe_messages_are_literal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "[bold]plant[x]"
    folder.mkdir()
    path = recipe(folder, "train:\n  '[bold]lr': 1\n  schedule: '[...]'\n", "[...].yaml")
    code, _out, err = show(capsys, "--config", str(path))
    assert code == 2, err
    assert f"{path}: line 2: train.[bold]lr: unknown key" in err
    assert f"{path}: line 3: train.schedule: Input should be 'constant-then-anneal', 'linear' or 'cosine'" in err


@pytest.mark.hostile_input
def test_class_names_with_brackets_show_literally_in_the_evaluation_table(capsys: pytest.CaptureFixture[str]) -> None:
    from inspect_core.cli.training import _print_evaluation
    from inspect_core.training.evaluation import EvaluationReport
    from inspect_core.training.metrics import MapResult

    per_class = {"[bold]hole[/bold]": {"ap50": 0.5, "ap50_95": 0.25, "instances": 3},
                 "stain [...]": {"ap50": 1.0, "ap50_95": 0.5, "instances": 1}}  # fmt: skip
    _print_evaluation(EvaluationReport("[red]valid", 4, MapResult(0.75, 0.375, per_class)))
    out = capsys.readouterr().out
    assert "[bold]hole[/bold]" in out and "stain [...]" in out and "[red]valid: mAP@50 0.750" in out


# --- more hostile recipes, one named refusal each ----------------------------------------------------------


@pytest.mark.hostile_input
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- train\n- score\n", "the config must be a mapping of sections, got list"),
        ("just words\n", "the config must be a mapping of sections, got str"),
        ("train: [1, 2]\n", "line 1: train: Input should be a valid dictionary"),
        ("train: null\n", "line 1: train: Input should be a valid dictionary"),
        ("train:\n  seed: 2023-13-45\n", "a value cannot be read"),
        ("train:\n  seed: 1" + "0" * 5000 + "\n", "a value cannot be read"),
        ("? [a, b]\n: 1\n", "malformed YAML"),
        ("1: x\n", "line 1: 1: Keys should be strings"),
        ("train:\n  lr: !!python/object/apply:os.system ['true']\n", "malformed YAML"),
        ("train:\n  lr: !!binary '###'\n", "line 2: train.lr: Input should be a valid number"),
        ("train:\n  lr: 0.1\n   epochs: 2\n", "malformed YAML"),
        ("train: {lr: 0.1\n", "malformed YAML"),
        ("--- {}\n--- {}\n", "malformed YAML"),
        ("train:\n  epochs: .inf\n", "line 2: train.epochs: Input should be a finite number"),
        ("train:\n  lr: .nan\n", "line 2: train.lr: Input should be greater than 0"),
        (
            "augment:\n  extra:\n    - name: NoSuchTransform\n",
            "line 3: augment.extra.0: Value error, transform NoSuchTransform: unknown albumentations transform",
        ),
        ("augment:\n  extra:\n    - name: Blur\n      params: {blur_limit: banana}\n", "augment.extra.0: Value error, transform Blur"),
        (
            "augment:\n  extra:\n    - name: Blur\n      params: {no_such_argument: 1}\n",
            "Argument(s) 'no_such_argument' are not valid for transform Blur",
        ),
        ("augment:\n  extra:\n    - name: __class__\n", "augment.extra.0: Value error, transform __class__: unknown albumentations"),
    ],
    ids=[
        "list",
        "scalar",
        "section-list",
        "section-null",
        "bad-date",
        "huge-int",
        "complex-key",
        "int-key",
        "python-tag",
        "bad-binary",
        "bad-indent",
        "unclosed-flow",
        "two-documents",
        "inf-epochs",
        "nan-lr",
        "unknown-transform",
        "bad-transform-param",
        "unknown-transform-param",
        "dunder-transform",
    ],
)
def test_hostile_recipes_are_refused_with_a_named_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = recipe(tmp_path, text)
    code, _out, err = show(capsys, "--config", str(path))
    assert code == 2, err
    assert err.startswith(f"error: {path}: ") and expected in err


@pytest.mark.hostile_input
def test_a_python_tag_never_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    path = recipe(tmp_path, f"train:\n  lr: !!python/object/apply:os.system ['touch {marker}']\n")
    code, _out, _err = show(capsys, "--config", str(path))
    assert code == 2 and not marker.exists()


@pytest.mark.hostile_input
@pytest.mark.parametrize("kind", ["folder", "missing", "unreadable"])
def test_a_recipe_path_that_is_not_a_readable_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    path = tmp_path / "recipe.yaml"
    if kind == "folder":
        path.mkdir()
    elif kind == "unreadable":
        if hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0:
            pytest.skip("root reads every file")
        recipe(tmp_path, "train: {}\n").chmod(0)
    code, _out, err = show(capsys, "--config", str(path))
    assert code == 2, err
    assert f"{path}: " in err


@pytest.mark.hostile_input
@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("train.lr", "--set train.lr: expected key.path=value"),
        ("=5", "--set =5: '': not a dotted key"),
        ("train..lr=1", "--set train..lr=1: 'train..lr': not a dotted key"),
        ("train.lr.x=1", "--set train.lr.x=1: train.lr: Input should be a valid number"),
        ("train.lr=[1, 2", "--set train.lr=[1, 2: malformed YAML"),
        ("train.lr=!!python/name:os.system", "--set train.lr=!!python/name:os.system: malformed YAML"),
        ("train.lr=*undefined", "--set train.lr=*undefined: malformed YAML"),
        ("train.learning_rate=1", "--set train.learning_rate=1: train.learning_rate: unknown key; known: output_dir, epochs"),
        (
            "score.class_thresholds.hole=2",
            "--set score.class_thresholds.hole=2: score: Value error, class thresholds must be within [0, 1]: {'hole': 2.0}",
        ),
        ("model.image_size=1e400", "--set model.image_size=1e400: model.image_size: Input should be"),
        ("train.epochs=-0x10", "--set train.epochs=-0x10: train.epochs: Input should be greater than or equal to 1"),
        ("train.l\rr=1", "--set 'train.l\\rr=1': 'train.l\\rr': unknown key"),
        ("\x1b[2J=1", "--set '\\x1b[2J=1': '\\x1b[2J': unknown key"),
    ],
)
def test_hostile_set_items_are_refused_naming_the_item(capsys: pytest.CaptureFixture[str], item: str, expected: str) -> None:
    code, _out, err = show(capsys, "--set", item)
    assert code == 2, err
    assert expected in err


# --- 6. fuzzing: any --set item, any recipe, exits 0 or 2 naming the key --------------------------------------

SET_EXAMPLES = 80
RECIPE_EXAMPLES = 60
TEXT_EXAMPLES = 60
YAML_CHARACTERS = "train: lr[]{},&*!|>-?#'\"\n\t 0.1e5~"


def _dotted_keys() -> list[str]:
    keys = []
    for section, field in InspectConfig.model_fields.items():
        keys.append(section)
        keys += [f"{section}.{name}" for name in field.annotation.model_fields]
    return keys


KNOWN_KEYS = _dotted_keys()
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["od", "lora", "cosine", "[bold]", "[...]", "~", "&a", "*a", "!!str", "- x", "{", "]"]),
)  # fmt: skip
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                      max_leaves=10)  # fmt: skip
KEYS = st.one_of(
    st.sampled_from(KNOWN_KEYS),
    st.builds(lambda key, tail: f"{key}.{tail}", st.sampled_from(KNOWN_KEYS), st.text(max_size=10)),
    st.text(max_size=16),
)


def _assert_accepted_or_named(code: int, err: str, *names: str) -> None:
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err
    if code == 2:
        assert any(name in err for name in names), err


@pytest.mark.hostile_input
@pytest.mark.parametrize(
    ("item", "says"),
    [("dataset.class_map.0=null\n...", "dataset.class_map.0: Input should be a valid string"),  # found by the fuzzer below
     ("dataset.class_map=5", "dataset.class_map: Input should be a valid dictionary or a valid string"),
     ("dataset.class_map.x.y=1", "dataset.class_map.x: Input should be a valid string")],
)  # fmt: skip
def test_a_bad_value_for_a_field_of_several_kinds_names_the_item_once(capsys: pytest.CaptureFixture[str], item: str, says: str) -> None:
    """``dataset.class_map`` is a mapping or text: pydantic fails once per kind, under locations holding its own tags
    (``dict[union[int,str],str]``), which named no key given, so the message lost its ``--set`` item."""
    code, _out, err = show(capsys, "--set", item)
    assert code == 2
    shown = item if item.isprintable() else repr(item)
    assert f"--set {shown}: {says}" in err, err
    assert "dict[" not in err and ".str:" not in err and err.count("--set") == 1, err


@pytest.mark.hostile_input(examples=SET_EXAMPLES)
@settings(max_examples=SET_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=KEYS, value=st.one_of(VALUES.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()), st.text(max_size=30)))
def test_fuzzed_set_items_exit_0_or_2_naming_the_item(capsys: pytest.CaptureFixture[str], key: str, value: str) -> None:
    item = f"{key}={value}"
    code, _out, err = show(capsys, "--set", item)
    _assert_accepted_or_named(code, err, f"--set {item if item.isprintable() else repr(item)}: ")


@pytest.mark.hostile_input(examples=RECIPE_EXAMPLES)
@settings(max_examples=RECIPE_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sections=st.dictionaries(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=10)), VALUES, max_size=5))
def test_fuzzed_recipes_exit_0_or_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], sections: dict) -> None:
    nested: dict = {}
    for key, value in sections.items():
        section, _, field = key.partition(".")
        target = nested.setdefault(section, {}) if field and isinstance(nested.get(section, {}), dict) else None
        if target is not None:
            target[field] = value
        else:
            nested[key] = value
    path = recipe(tmp_path, yaml.safe_dump(nested, allow_unicode=True))
    code, _out, err = show(capsys, "--config", str(path))
    _assert_accepted_or_named(code, err, f"error: {path}: ")


@pytest.mark.hostile_input(examples=TEXT_EXAMPLES)
@settings(max_examples=TEXT_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=st.one_of(st.binary(max_size=200), st.text(alphabet=st.sampled_from(list(YAML_CHARACTERS)), max_size=120)))
def test_fuzzed_recipe_bytes_exit_0_or_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], raw: bytes | str) -> None:
    path = recipe(tmp_path, raw)
    code, _out, err = show(capsys, "--config", str(path))
    _assert_accepted_or_named(code, err, f"error: {path}: ")


@pytest.mark.hostile_input
def test_the_shared_loader_raises_the_callers_error_class() -> None:
    with pytest.raises(BadInputError, match=r"^data\.yaml: line 2: duplicate key 'names'"):
        safe_yaml_load("names: [a]\nnames: [b]\n", "data.yaml", error=BadInputError)
    with pytest.raises(BadInputError, match=r"^data\.yaml: not UTF-8 text: byte 0xff at byte position 7"):
        safe_yaml_load(b"names: \xff\n", "data.yaml", error=BadInputError)
    assert safe_yaml_load("", "empty.yaml") is None
