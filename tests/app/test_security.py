"""Who may open the app: loopback only without a login, credentials from the environment or a private file, never argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspect_app.security import (
    PASSWORD_VARIABLE,
    USER_VARIABLE,
    check_binding,
    credentials,
    is_loopback,
    prepare_environment,
    read_auth_file,
)
from inspect_core.cli import main
from inspect_core.errors import EXIT_USAGE, UsageError


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "inspect.plant.local", "fe80::1"])
def test_network_addresses(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(UsageError, match=f"{USER_VARIABLE} and {PASSWORD_VARIABLE}.*--auth-file"):
        check_binding(host, [])
    check_binding(host, [("qe", "long-enough")])  # with a login it may bind


def test_credentials_from_the_environment() -> None:
    assert credentials({}, None) == []
    assert credentials({USER_VARIABLE: "qe", PASSWORD_VARIABLE: "s3cret-pass"}, None) == [("qe", "s3cret-pass")]
    with pytest.raises(UsageError, match=f"{USER_VARIABLE} is set but {PASSWORD_VARIABLE} is not"):
        credentials({USER_VARIABLE: "qe"}, None)
    with pytest.raises(UsageError, match=f"{PASSWORD_VARIABLE} is set but {USER_VARIABLE} is not"):
        credentials({PASSWORD_VARIABLE: "s3cret-pass"}, None)
    with pytest.raises(UsageError, match="shorter than 8"):
        credentials({USER_VARIABLE: "qe", PASSWORD_VARIABLE: "short"}, None)
    with pytest.raises(UsageError, match="user name"):
        credentials({USER_VARIABLE: "q e", PASSWORD_VARIABLE: "s3cret-pass"}, None)


def _auth_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "logins"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_auth_file_lines_comments_and_passwords_with_colons(tmp_path: Path) -> None:
    path = _auth_file(tmp_path, "# quality engineers\nqe:first-password\n\nop2:pass:with:colons\n")
    assert read_auth_file(path) == [("qe", "first-password"), ("op2", "pass:with:colons")]
    env = {USER_VARIABLE: "admin", PASSWORD_VARIABLE: "admin-password"}
    assert credentials(env, path) == [("admin", "admin-password"), ("qe", "first-password"), ("op2", "pass:with:colons")]


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ("qe:first-password\n", 0o644, "other users can read it.*chmod 600"),
        ("qe:first-password\n", 0o640, "other users can read it"),
        ("qe first-password\n", 0o600, "line 1: expected user:password"),
        ("# nobody\n\n", 0o600, "no user:password line"),
        ("qe:short\n", 0o600, "line 1: the password of 'qe' is shorter"),
    ],
)
def test_bad_auth_files_are_refused_with_the_reason(tmp_path: Path, text: str, mode: int, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        read_auth_file(_auth_file(tmp_path, text, mode))


def test_missing_auth_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--auth-file .*no such file"):
        read_auth_file(tmp_path / "nope")


def test_prepare_environment_disables_analytics_and_makes_a_private_upload_folder() -> None:
    environ: dict[str, str] = {}
    folder = prepare_environment(environ)
    try:
        assert environ["GRADIO_ANALYTICS_ENABLED"] == "False"
        assert environ["GRADIO_TEMP_DIR"] == str(folder) and folder.is_dir()
        assert (folder.stat().st_mode & 0o777) == 0o700
        assert Path(environ["GRADIO_EXAMPLES_CACHE"]).parent == folder
    finally:
        folder.rmdir()


# -- the command line ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_login_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(USER_VARIABLE, raising=False)
    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)


def test_a_network_host_without_credentials_is_a_usage_error(no_login_env, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["app", "--db", f"sqlite:///{tmp_path / 'results.db'}", "--host", "0.0.0.0"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--host 0.0.0.0" in err and USER_VARIABLE in err and "--auth-file" in err
    assert not (tmp_path / "results.db").exists()  # refused before the store was opened


def test_a_readable_auth_file_is_a_usage_error(no_login_env, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _auth_file(tmp_path, "qe:first-password\n", 0o644)
    assert main(["app", "--host", "0.0.0.0", "--auth-file", str(path)]) == EXIT_USAGE
    assert "chmod 600" in capsys.readouterr().err


def test_there_is_no_password_option(capsys: pytest.CaptureFixture) -> None:
    assert main(["app", "--password", "s3cret-pass"]) == EXIT_USAGE


def test_help_says_how_to_log_in(capsys: pytest.CaptureFixture) -> None:
    assert main(["app", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    for words in ("127.0.0.1", USER_VARIABLE, PASSWORD_VARIABLE, "--auth-file", "never taken on the command line"):
        assert words in shown, words


def test_a_store_that_is_not_there_is_a_usage_error(no_login_env, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["app", "--db", f"sqlite:///{tmp_path / 'none.db'}"]) == EXIT_USAGE
    assert "score images into it first" in capsys.readouterr().err


def test_a_model_that_is_not_there_is_a_usage_error_before_serving(no_login_env, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from inspect_core.store import open_store

    url = f"sqlite:///{tmp_path / 'results.db'}"
    open_store(url).dispose()
    assert main(["app", "--db", url, "--model", str(tmp_path / "no-such-model")]) == EXIT_USAGE
    assert "no-such-model" in capsys.readouterr().err
    assert main(["app", "--db", url, "--model", "champion"]) == EXIT_USAGE
    assert "no promoted model" in capsys.readouterr().err
