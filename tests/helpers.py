"""What rrnet's tests share: municipality codes, synthetic register exports, running
the CLI in a subprocess, and the bytes of a ledger folder.

Plain constants and functions; fixtures live in conftest.py. Import them as
``from helpers import ...``: pytest puts tests/ on sys.path (conftest.py lives
there), and tests/reliability/harness.py adds it for benchmarks/crash_campaign.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: 千代田区: the municipality of the tests' ledgers (and of rrnet's own examples).
MUNICIPALITY = "131016"
#: さくら市: the synthetic city of sample_data/profile.toml and the README's demo.
SAMPLE_MUNICIPALITY = "139998"

#: The columns every register export must have, in the order test exports print them.
REQUIRED_COLUMNS = ("resident_id", "name", "birth_date", "sex", "nationality", "address")

#: Seconds a subprocess may run before the test fails rather than hangs (the 1M-row
#: scale test is the slowest run).
SUBPROCESS_TIMEOUT = 1200

#: A command-line argument: text or a path.
Arg = str | os.PathLike[str]


# -- synthetic register exports ---------------------------------------------------


def write_export(path: Path, n: int, *, start: int = 0) -> Path:
    """Write a valid UTF-8 CSV export of ``n`` residents with ids ``start`` .. ``start+n-1``.

    Only the required columns; ids are zero-padded to 9 digits; nobody arrives with
    a code or is moving out, so every resident gets a new code. Exports written
    with disjoint id ranges share no resident; overlapping ranges share residents.
    """
    lines = [",".join(REQUIRED_COLUMNS) + "\n"]
    lines += [
        f"{i:09d},PERSON {i},1990-01-01,F,VNM,さくら市{i}番\n" for i in range(start, start + n)
    ]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def write_exports(folder: Path, count: int, n: int) -> list[Path]:
    """``count`` exports ``export0.csv``, ``export1.csv``... in ``folder``, of ``n``
    residents each; no resident is in two of them."""
    return [write_export(folder / f"export{i}.csv", n, start=i * n) for i in range(count)]


# -- the CLI in a subprocess ------------------------------------------------------


def rrnet_command(*args: Arg) -> list[str]:
    """The command line running ``rrnet ARGS`` with this interpreter (``python -m rrnet_cli``)."""
    return [sys.executable, "-m", "rrnet_cli", *map(str, args)]


def rrnet(
    *args: Arg,
    env: Mapping[str, str] | None = None,
    check: bool = False,
    timeout: float = SUBPROCESS_TIMEOUT,
    **options: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ``rrnet ARGS`` in a subprocess and wait for it; stdout and stderr captured as text.

    ``env`` adds to this process's environment (``{"RRNET_FAILPOINT": ...}``);
    ``check=True`` raises CalledProcessError on a non-zero exit. Other keyword
    arguments go to subprocess.run (``cwd``, ``preexec_fn``...).
    """
    return subprocess.run(
        rrnet_command(*args),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=check,
        timeout=timeout,
        **options,
    )


def start_rrnet(*args: Arg, stderr: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
    """Start ``rrnet ARGS`` in a subprocess without waiting: to kill it, or run several at once.

    Its stdout is discarded, and so is stderr unless ``stderr=subprocess.PIPE``.
    """
    return subprocess.Popen(
        rrnet_command(*args), stdout=subprocess.DEVNULL, stderr=stderr, text=True
    )


def assign_in_subprocess(
    export: Arg, ledger: Arg, output: Arg, *extra: Arg, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``rrnet assign EXPORT --ledger LEDGER -o OUTPUT [EXTRA]`` and wait for it.

    ``options`` as for :func:`rrnet` (``env``, ``check``, ``preexec_fn``...).
    """
    return rrnet("assign", export, "--ledger", ledger, "-o", output, *extra, **options)


def start_assign_in_subprocess(
    export: Arg, ledger: Arg, output: Arg, *extra: Arg, stderr: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """Start ``rrnet assign EXPORT --ledger LEDGER -o OUTPUT [EXTRA]`` without waiting
    (see :func:`start_rrnet`)."""
    return start_rrnet("assign", export, "--ledger", ledger, "-o", output, *extra, stderr=stderr)


# -- proving a ledger was left untouched ------------------------------------------


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


# -- notification sheets ----------------------------------------------------------

#: The sample municipality profile (sender details, address-block position).
SAMPLE_PROFILE = Path(__file__).resolve().parent.parent / "sample_data" / "profile.toml"


def profile_for(municipality: str, folder: Path) -> Path:
    """The sample profile, written into ``folder`` for ``municipality``.

    notify refuses a profile of another municipality than the ledger's, so a
    test ledger of 千代田区 needs a profile that says 131016.
    """
    text = SAMPLE_PROFILE.read_text(encoding="utf-8")
    path = Path(folder) / f"profile-{municipality}.toml"
    path.write_text(
        text.replace(f'code = "{SAMPLE_MUNICIPALITY}"', f'code = "{municipality}"'),
        encoding="utf-8",
    )
    return path


# -- the CLI in this process ------------------------------------------------------


def run_cli(runner: Any, *args: Arg) -> tuple[int, str]:
    """Run ``rrnet ARGS`` through a CliRunner; its exit code and output."""
    from rrnet_cli.cli import app

    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def cli_ok(runner: Any, *args: Arg) -> str:
    """Run ``rrnet ARGS`` through a CliRunner, require exit 0, and return its output."""
    code, output = run_cli(runner, *args)
    assert code == 0, output
    return output
