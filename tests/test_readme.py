"""The README's example output is what the commands print.

The console blocks of the README's "Examples" and "After the migration"
sections are run, in the order the README shows them, in a folder where
``sample_data`` is the repository's and ``demo`` starts empty (as ``make
demo`` makes it). What changes from run to run (times, batch names, codes
drawn at random, hashes, sizes) is replaced by a placeholder on both sides,
and table rules and padding are ignored, so a column that grows by a digit
does not matter but a row, a label or a count that differs does. A line
``...`` in the README stands for lines left out.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
#: The sections whose console blocks show real output of the demo's ledger.
SECTIONS = ("## Examples (real output, `make demo`)", "## After the migration")
#: Volatile values, in the order they are replaced.
PLACEHOLDERS = [
    (re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}"), "<batch>"),
    (re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?"), "<time>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}"), "<date>"),
    (re.compile(r"\b\d{4} \d{4} \d{3}\b"), "<code>"),
    (re.compile(r"\d+(\.\d+)? s \(\d+(\.\d+)? sheets/s\)"), "<duration>"),
    (re.compile(r"\b\d+(\.\d+)? s\b"), "<duration>"),
    (re.compile(r"\b\d+(\.\d+)? (bytes|KB|MB|GB)\b"), "<size>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<hash>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<hash>"),
]


def normalised(line: str) -> str:
    for pattern, placeholder in PLACEHOLDERS:
        line = pattern.sub(placeholder, line)
    line = re.sub(r"[─━]+", "─", line)
    return re.sub(r"\s+", " ", line).strip()


def console_blocks() -> list[list[str]]:
    """The console blocks of ``SECTIONS``, each as its lines."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for heading in SECTIONS:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        section = text[start : end if end != -1 else len(text)]
        blocks += [b.splitlines() for b in re.findall(r"```console\n(.*?)```", section, re.S)]
    return blocks


def runnable(block: list[str]) -> bool:
    """Whether every file the block's commands read is here (``sample_data`` or
    written into ``demo`` before): a block of commands on files of the reader's own
    (national_extract.txt) is an illustration, not output."""
    for line in block:
        if line.startswith("$ rrnet "):
            for word in shlex.split(line[2:], comments=True):
                if re.search(r"\.(csv|txt|toml|xlsx|parquet)$", word) and "/" not in word:
                    return False
    return True


def commands(block: list[str]) -> list[tuple[str, list[str]]]:
    """Each ``$ command`` of a block with the lines shown after it."""
    shown: list[tuple[str, list[str]]] = []
    for line in block:
        if line.startswith("$ "):
            shown.append((line[2:], []))
        elif shown:
            shown[-1][1].append(line)
    return shown


def matches(shown: list[str], printed: list[str]) -> bool:
    """Whether ``printed`` is ``shown``, where a ``...`` line stands for any lines."""
    parts: list[list[str]] = [[]]
    for line in map(normalised, shown):
        if line == "...":
            parts.append([])
        elif line:
            parts[-1].append(line)
    lines = [line for line in map(normalised, printed) if line]
    if len(parts) == 1:
        return lines == parts[0]
    at = 0
    for part in parts:
        found = next(
            (i for i in range(at, len(lines) - len(part) + 1) if lines[i : i + len(part)] == part),
            None,
        )
        if found is None:
            return False
        at = found + len(part)
    return True


def demo_commands() -> list[str]:
    """The rrnet commands of ``make demo``, as the README writes them."""
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8").split("\ndemo:", 1)[1]
    recipe = recipe.split("\n\n", 1)[0]
    return [
        line.strip().replace("$(BIN)/rrnet", "rrnet").replace("$(DEMO)", "demo")
        for line in recipe.splitlines()
        if "$(BIN)/rrnet" in line
    ]


def test_the_readme_shows_every_command_make_demo_runs() -> None:
    shown = [command for command, _ in commands(console_blocks()[0])]
    wanted = demo_commands()
    assert wanted and [c for c in shown if c in wanted] == wanted, (shown, wanted)


@pytest.mark.slow
def test_the_readme_example_output_is_what_the_demo_prints(tmp_path: Path) -> None:
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    (tmp_path / "demo").mkdir(mode=0o700)
    env = {**os.environ, "COLUMNS": "100", "LOGNAME": "root", "USER": "root"}
    for name in ("RRNET_LEDGER", "RRNET_PROFILE", "RRNET_MUNICIPALITY"):
        env.pop(name, None)
    status = 0
    differences = []
    for block in filter(runnable, console_blocks()):
        for command, shown in commands(block):
            if command == "echo $?":
                printed = [str(status)]
            else:
                words = shlex.split(command, comments=True)
                assert words[0] == "rrnet", command
                run = subprocess.run(
                    [sys.executable, "-m", "rrnet_cli", *words[1:]],
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=600,
                )
                status, printed = run.returncode, run.stdout.splitlines()
            if not matches(shown, printed):
                differences.append(
                    f"$ {command}\n--- README\n"
                    + "\n".join(shown)
                    + "\n--- printed\n"
                    + "\n".join(printed)
                )
    assert not differences, "\n\n".join(differences)
