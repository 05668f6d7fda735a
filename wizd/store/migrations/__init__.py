"""The numbered SQL migrations of each backend (one folder per backend)."""

from __future__ import annotations

from importlib import resources


def bundled(backend: str) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration bundled for `backend`, in order."""
    found = []
    for entry in (resources.files(__name__) / backend).iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)
