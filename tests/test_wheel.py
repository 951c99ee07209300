"""The built wheel works on its own: build it, install it into a new venv, run rrnet.

CI and ``make`` install rrnet with ``pip install -e``, which runs from the
checkout and so cannot show that the wheel carries everything rrnet needs at run
time (the templates once did not ship). This test builds the sdist and wheel from
a copy of the tracked files, installs the wheel into a fresh virtualenv outside
the checkout, and runs init -> assign -> notify -> verify from a temporary folder
with that venv's ``rrnet``. Dependencies come from the package index (or pip's
cache), so it takes a minute or more.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfReader

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MUNICIPALITY = "139998"


def squash(text: str) -> str:
    """Compare text without whitespace (PDF text extraction breaks lines freely)."""
    return re.sub(r"\s+", "", text)


def run(args: list[str | Path], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command with a clean environment; fail with its output if it exits non-zero."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RRNET_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["PYTHONNOUSERSITE"] = "1"  # nothing from ~/.local may stand in for the wheel
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {done.returncode} (cwd {cwd})\n"
            f"--- stdout ---\n{done.stdout[-5000:]}\n--- stderr ---\n{done.stderr[-5000:]}"
        )
    return done


def copy_tracked_files(dest: Path) -> None:
    """Copy the checkout's tracked files (as they are on disk) to ``dest``.

    Untracked files, ``.venv`` and build leftovers stay behind, so the build sees
    what a fresh clone would hold (plus uncommitted edits to tracked files).
    """
    # safe.directory: CI may run as root on a checkout owned by someone else.
    listed = subprocess.run(
        ["git", "-c", "safe.directory=*", "ls-files", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    names = [n for n in listed.split("\0") if n]
    assert "pyproject.toml" in names
    for name in names:
        source = ROOT / name
        if not source.is_file():  # tracked but deleted in the working tree
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


@pytest.mark.skipif(
    not (ROOT / ".git").exists() or shutil.which("git") is None,
    reason="needs a git checkout (the copy is made from `git ls-files`)",
)
def test_the_wheel_carries_the_templates_and_runs_outside_the_checkout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timings: dict[str, float] = {}

    def timed(step: str, args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        done = run(args, cwd)
        timings[step] = time.perf_counter() - start
        return done

    # 1. Build the sdist and the wheel from a copy of the tracked files.
    source = tmp_path / "source"
    copy_tracked_files(source)
    dist = tmp_path / "dist"
    timed(
        "build",
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", dist, "."],
        source,
    )
    (wheel,) = dist.glob("rrnet-*.whl")
    (sdist,) = dist.glob("rrnet-*.tar.gz")

    templates = source / "rrnet_cli" / "templates"
    wanted = {p.relative_to(source).as_posix() for p in templates.rglob("*") if p.is_file()}
    assert "rrnet_cli/templates/notices/ja.toml" in wanted
    assert "rrnet_cli/templates/sheet.html.j2" in wanted
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    assert wanted <= in_wheel, f"missing from the wheel: {sorted(wanted - in_wheel)}"
    package = {p.relative_to(source).as_posix() for p in (source / "rrnet_cli").rglob("*.py")}
    assert package <= in_wheel, f"modules missing from the wheel: {sorted(package - in_wheel)}"
    tops = {name.split("/", 1)[0] for name in in_wheel}
    others = {top for top in tops if not top.endswith(".dist-info")}
    assert others == {"rrnet_cli"}, f"the wheel holds more than the package: {sorted(tops)}"
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert wanted <= in_sdist, f"missing from the sdist: {sorted(wanted - in_sdist)}"

    # 2. A new venv outside the checkout, with only the wheel (and its dependencies).
    venv = tmp_path / "venv"
    timed("venv", [sys.executable, "-m", "venv", venv], tmp_path)
    python, rrnet = venv / "bin" / "python", venv / "bin" / "rrnet"
    timed(
        "pip install",
        [
            python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--root-user-action=ignore",
            # The versions `make test` tested, not whatever is newest today.
            "--constraint",
            ROOT / ".ci" / "constraints.txt",
            wheel,
        ],
        tmp_path,
    )

    # 3. Everything runs from a scratch folder, away from any source tree.
    work = tmp_path / "work"
    work.mkdir()
    probe = timed(
        "import probe",
        [
            python,
            "-c",
            "import json, rrnet_cli, rrnet_cli.languages as l;"
            "print(json.dumps({'file': rrnet_cli.__file__, 'templates': str(l.TEMPLATES)}))",
        ],
        work,
    )
    installed = json.loads(probe.stdout)
    package_file = Path(installed["file"]).resolve()
    installed_templates = Path(installed["templates"]).resolve()
    assert package_file.is_relative_to(venv.resolve()), package_file
    assert not package_file.is_relative_to(ROOT), package_file
    assert installed_templates == package_file.parent / "templates"
    got = {
        "rrnet_cli/templates/" + p.relative_to(installed_templates).as_posix()
        for p in installed_templates.rglob("*")
        if p.is_file()
    }
    assert wanted <= got, f"missing from the install: {sorted(wanted - got)}"

    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    shown = timed("rrnet --version", [rrnet, "--version"], work)
    assert shown.stdout.strip() == f"rrnet {version}"

    timed("rrnet doctor", [rrnet, "doctor"], work)
    timed("rrnet ledger init", [rrnet, "ledger", "init", "L", "-m", MUNICIPALITY], work)
    timed(
        "rrnet assign",
        [
            rrnet,
            "assign",
            ROOT / "sample_data" / "register_ja_cp932.csv",
            "--ledger",
            "L",
            "-o",
            "assigned.csv",
        ],
        work,
    )
    timed(
        "rrnet notify",
        [
            rrnet,
            "notify",
            "assigned.csv",
            "--ledger",
            "L",
            "--profile",
            ROOT / "sample_data" / "profile.toml",
            "-o",
            "sheets",
        ],
        work,
    )
    timed("rrnet verify", [rrnet, "verify", "assigned.csv", "--ledger", "L"], work)

    # 4. The sheets are there, and they carry the Japanese title from the shipped wording.
    sheets = work / "sheets"
    pdfs = sorted(sheets.glob("sheets-*.pdf"))
    assert pdfs, f"no PDFs in {sheets}: {sorted(p.name for p in sheets.iterdir())}"
    manifest = (sheets / "manifest.csv").read_text(encoding="utf-8-sig").splitlines()
    pages = sum(len(PdfReader(pdf).pages) for pdf in pdfs)
    assert len(manifest) - 1 == pages > 0
    ja = tomllib.loads((templates / "notices" / "ja.toml").read_text(encoding="utf-8"))
    title = squash(ja["text"]["title"])
    for pdf in pdfs:
        assert title in squash(PdfReader(pdf).pages[0].extract_text()), pdf.name

    with capsys.disabled():
        total = sum(timings.values())
        steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in timings.items())
        print(f"\nwheel smoke test: {total:.1f} s ({steps}); {len(pdfs)} PDFs, {pages} sheets")
