"""Who may open the app, and what it may serve: checked before Gradio is imported, so a refused start costs nothing.

- Bound to a loopback address (127.0.0.1, ::1, localhost) the app is for the person at the machine. Any
  other address exposes detections and frames of the plant to the network, so it needs credentials.
- Credentials come from the environment (``INSPECT_APP_USER`` / ``INSPECT_APP_PASSWORD``) or a file of
  ``user:password`` lines, never from the command line: arguments are visible to every user of the machine
  in ``ps`` and land in shell histories. A credentials file others can read is refused for the same reason.
- Gradio serves files only from the folders it is told about (``allowed_paths``, none here) and from its own
  upload and cache folders; the default upload folder (``/tmp/gradio``) is shared by every Gradio process of
  the machine, so the app gets a private one (mode 0700), its examples cache too (default: ``.gradio/`` in
  the working directory). Frames reach the browser only as pictures the app
  rendered from a store image id, never by a path from the browser.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from inspect_core.errors import UsageError

USER_VARIABLE = "INSPECT_APP_USER"
PASSWORD_VARIABLE = "INSPECT_APP_PASSWORD"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
MIN_PASSWORD = 8  # a network-exposed login: anything shorter falls to a dictionary in minutes

Credentials = list[tuple[str, str]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name or 0.0.0.0: reachable from elsewhere


def _checked(user: str, password: str, where: str) -> tuple[str, str]:
    if not user or any(c.isspace() or c == ":" for c in user):
        raise UsageError(f"{where}: the user name must be non-empty, without spaces or ':'")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"{where}: the password of {user!r} is shorter than {MIN_PASSWORD} characters")
    return user, password


def read_auth_file(path: Path) -> Credentials:
    """``user:password`` lines (blank lines and ``#`` comments skipped); the file must not be readable by others."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"--auth-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--auth-file {path}: cannot read it ({error})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"--auth-file {path}: other users can read it (mode {stat.filemode(mode)}): chmod 600 {path}")
    found: Credentials = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, colon, password = line.partition(":")
        if not colon:
            raise UsageError(f"--auth-file {path}: line {number}: expected user:password")
        found.append(_checked(user.strip(), password, f"--auth-file {path}: line {number}"))
    if not found:
        raise UsageError(f"--auth-file {path}: no user:password line")
    return found


def credentials(environ: Mapping[str, str], auth_file: Path | None) -> Credentials:
    """The logins the app accepts: from ``INSPECT_APP_USER``/``INSPECT_APP_PASSWORD`` and/or ``auth_file``; [] for none."""
    found: Credentials = []
    user, password = environ.get(USER_VARIABLE), environ.get(PASSWORD_VARIABLE)
    if (user is None) != (password is None):
        given, missing = (USER_VARIABLE, PASSWORD_VARIABLE) if password is None else (PASSWORD_VARIABLE, USER_VARIABLE)
        raise UsageError(f"{given} is set but {missing} is not: set both (or neither)")
    if user is not None and password is not None:
        found.append(_checked(user, password, f"{USER_VARIABLE}/{PASSWORD_VARIABLE}"))
    if auth_file is not None:
        found += read_auth_file(auth_file)
    return found


def check_binding(host: str, logins: Credentials) -> None:
    """A usage error when ``host`` is reachable from the network and no login is configured."""
    if not host.strip():
        raise UsageError("--host is empty: give an address such as 127.0.0.1")
    if not is_loopback(host) and not logins:
        raise UsageError(
            f"--host {host} makes the app reachable from the network: it then needs credentials, from the environment "
            f"({USER_VARIABLE} and {PASSWORD_VARIABLE}) or --auth-file FILE (lines user:password, chmod 600); "
            "passwords are never taken on the command line"
        )


def prepare_environment(environ: os._Environ | dict[str, str] | None = None) -> Path:
    """Set what Gradio reads from the environment before it starts: no analytics calls, a private upload folder.

    Returns the upload folder (created, mode 0700), which Gradio serves files from: only what the app
    itself wrote there (uploads, rendered frames) can ever be fetched.
    """
    environ = os.environ if environ is None else environ
    environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    environ.setdefault("DO_NOT_TRACK", "1")
    folder = Path(tempfile.mkdtemp(prefix="inspect-app-"))
    folder.chmod(0o700)
    environ["GRADIO_TEMP_DIR"] = str(folder)
    environ["GRADIO_EXAMPLES_CACHE"] = str(folder / "examples")  # default: .gradio/ under whatever the working directory is
    return folder
