"""What a test compares to prove a ledger (or any folder) was left untouched."""

from __future__ import annotations

from pathlib import Path


def folder_bytes(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes under ``folder`` (folders as None), except the ``lock`` file.

    The lock file holds a note of the last holder, which any run rewrites; it is
    not ledger content.
    """
    if folder.is_file():
        return {"": folder.read_bytes()}
    return {
        str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if str(p.relative_to(folder)) != "lock"
    }
