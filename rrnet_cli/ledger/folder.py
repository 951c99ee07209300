"""The folder ledger: the embedded default store, a directory of Parquet segments.

A ledger folder is::

    LEDGER/
      manifest.json        which segments make up the ledger (replaced atomically)
      lock                 flock()ed by the one run that may write
      segments/*.parquet   immutable record segments, each sorted by code

Why it is crash-safe: a transaction writes its new segments under fresh names,
fsyncs them, then writes a new manifest to a temporary file, fsyncs it and
renames it over ``manifest.json`` (an atomic step on POSIX file systems), then
fsyncs the directory. Readers only ever follow the manifest, so a crash at any
instant leaves either the old manifest (the run never happened; its stray
segment files are swept by the next writer) or the new one (the run is whole).

Why runs cannot collide: a writer holds an exclusive ``flock`` on ``lock`` from
before it reads the ledger until after it has committed; a second run waits for
the lock or gives up with a clear message. The kernel drops the lock when the
holder dies, even by ``kill -9``.

The audit trail (``rrnet_cli.ledger.audit``) lives in the manifest it
describes, written in the same atomic replace as the segments.

Designated pools are stored as their own segments, written through the same
transaction and commit path as any other. A pool segment holds only sorted
codes, and its manifest entry says ``statuses: {"designated": n}``. Pool mode
is the manifest key ``pool_mode``; changing it is a transaction of its own that
adds no segment. A manifest that has a pool or a pool mode is written as
version 3, so that an rrnet from before pools refuses the ledger instead of
ignoring its pool mode (or taking designated codes for used ones); a ledger
without a pool stays version 2.

Where the ledger is (its place): a folder copied by hand (``cp -a``, rsync, a
file manager, a backup restored) is a second ledger that draws codes without
seeing the first's, and each passes its own check. So a folder ledger is bound
to its folder. The audit record that creates it (transaction 0), relocates it
(``rrnet ledger relocate``) or copies it (``rrnet ledger copy``) names its
place (``audit.PLACE``): a ledger id, the folder's real path, and the identity
of its place mark, the file ``place`` in the folder: its inode number and
change time (ctime, to the nanosecond). A copy cannot carry those: every copy
or restore makes a new file, and the kernel sets its change time; nobody can
set it back. The folder's own inode number is not enough: restoring a backup
where the folder was (``rm -rf``, then ``tar x``) gives the new folder the old
folder's inode number on ext4. The path is checked as well, because a ``mv``
keeps the mark as it is.

A folder is its ledger's place when its mark is the one recorded and it is the
recorded folder: its real path (symbolic links resolved) is the recorded one,
or the recorded path leads to this very folder (a bind mount). Every write
checks that under the lock, before anything else, and refuses otherwise;
reading stays possible (the command line warns). ``rrnet ledger relocate``
binds the ledger to the folder it is in now, with a fresh mark, in a
transaction of its own. A ledger from before the binding has no place
recorded; its first committed write binds it (the record of that write names
the place). A transaction that only relocates adds no segment, so the ledger
is then written as version 6: an rrnet from before it would take the missing
segment for damage.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rrnet_cli import code as rcode
from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT, LedgerBusy, LedgerError
from rrnet_cli.files import PRIVATE_DIR, PRIVATE_FILE, fsync_dir, naming
from rrnet_cli.ledger.audit import (
    COPIED_FROM,
    MOVED_TO,
    PLACE,
    TRANSACTIONS,
    AuditLog,
    audit_details,
    check_chain,
    copy_boundary,
    latest_place,
    seal,
)
from rrnet_cli.ledger.interface import (
    DESIGNATED,
    POOL_MODE,
    RECORD_SCHEMA,
    WAIT_NOTICE_AFTER,
    CodeIndex,
    Invocation,
    LedgerState,
    SegmentInfo,
    SortedCodes,
    Status,
    Waiting,
    file_sha256,
    first_notices_due,
    on_off,
)
from rrnet_cli.ledger.interface import failpoint as _failpoint
from rrnet_cli.ledger.notices import (
    NOTICE,
    NOTICE_SCHEMA,
    NOTICE_VERSION,
    NoticeKind,
    empty_notices,
    is_notice_segment,
)

if TYPE_CHECKING:
    from rrnet_cli.ledger.integrity import IntegrityReport

FORMAT = "rrnet-ledger"
#: The manifest version this rrnet writes: 2 has the audit trail (``transactions``).
VERSION = 2
#: The version it writes once the ledger has a designated pool or a pool mode: an
#: rrnet from before pools refuses it rather than draw outside the pool.
POOL_VERSION = 3
#: The versions it reads: 1 (before the audit trail) is upgraded on the next write.
#: The version a ledger closed by ``rrnet ledger copy --move`` is written as: an
#: rrnet from before that refuses it, rather than write to a ledger that moved.
MOVED_VERSION = 5
#: The version a ledger is written as once a transaction of its own relocated it
#: (``rrnet ledger relocate``: no segment): an rrnet from before would take the
#: missing segment for damage.
RELOCATED_VERSION = 6
READABLE_VERSIONS = (1, 2, 3, NOTICE_VERSION, MOVED_VERSION, RELOCATED_VERSION)
MANIFEST = "manifest.json"
LOCK = "lock"
SEGMENTS = "segments"
#: The place mark: a file whose inode and change time the audit trail records.
PLACE_MARK = "place"
_MARK_TEXT = (
    "This file marks the folder this rrnet ledger is bound to. Do not edit, touch or\n"
    "replace it. A copy of this folder is not the ledger: make a new ledger with\n"
    "`rrnet ledger copy`, and after a move or a restore from backup run\n"
    "`rrnet ledger relocate`.\n"
)

#: Segments smaller than this are merged in memory when a ledger is opened, so
#: that many small runs do not turn every membership test into many searches.
_SMALL_SEGMENT = 4_000_000


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        with naming(path), os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        _failpoint("before-manifest-replace")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    # Once replaced, the new manifest is the ledger: the commit has happened. A failed
    # directory fsync cannot undo it and must not make the caller abort (an abort
    # removes the staged segments, which the manifest now names).
    with contextlib.suppress(OSError):
        fsync_dir(path.parent)


def _mark_of(folder: Path) -> dict[str, int] | None:
    """The identity of ``folder``'s place mark (inode, change time), or None."""
    try:
        st = os.stat(folder / PLACE_MARK)
    except OSError:
        return None
    return {"inode": st.st_ino, "ctime_ns": st.st_ctime_ns}


def new_place(folder: Path, ledger_id: str, *, path: Path | None = None) -> dict[str, Any]:
    """Write a fresh place mark into ``folder`` and return the place to record.

    ``path``: where the folder will be (a copy is written under a temporary
    name and renamed into place; the rename keeps the mark as it is).
    """
    mark = folder / PLACE_MARK
    tmp = folder / f".{PLACE_MARK}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(_MARK_TEXT)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, mark)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(folder)
    return {
        "ledger": ledger_id,
        "path": os.path.realpath(path or folder),
        "mark": _mark_of(folder),
    }


def _same_folder(one: str | Path, other: str | Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


@dataclass(frozen=True)
class Misplaced:
    """A ledger folder that is not the place its ledger is bound to."""

    #: this folder, its real path
    here: str
    #: the place the audit trail records
    bound: str
    ledger_id: str
    #: what happened, in a sentence
    what: str
    #: the recorded place still holds the ledger, bound there (this is a copy)
    original_in_place: bool

    def refusal(self) -> str:
        """The message a write gets: what happened, and what to do."""
        if self.original_in_place:
            todo = (
                f"Run this against {self.bound}. To make a new ledger from it, use "
                "`rrnet ledger copy`, which checks the copy and binds it to its folder."
            )
        else:
            todo = (
                "If this folder is to be the ledger from now on (it was moved, or restored "
                f"from a backup), run `rrnet ledger relocate --ledger {self.here}` once; after "
                "a restore, first bring in the codes assigned since the backup was made "
                "(`rrnet ledger import`). To make a new ledger from it instead, use "
                "`rrnet ledger copy`."
            )
        return (
            f"{self.what} Nothing was written: a folder ledger writes only in the folder it "
            "is bound to, because a copy made by hand draws codes without seeing the "
            f"original's, which is how duplicate codes happen. {todo} Reading this folder "
            "(stats, log, verify) still works."
        )

    def warning(self) -> str:
        """The warning a read gets."""
        todo = (
            f"the ledger is at {self.bound}"
            if self.original_in_place
            else "`rrnet ledger relocate` makes this folder the ledger"
        )
        return f"{self.what} Reading works; writing here is refused ({todo})."


class Ledger:
    """A ledger directory (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.manifest_path = self.path / MANIFEST
        self.segments_path = self.path / SEGMENTS

    # -- creating and opening -------------------------------------------------

    @classmethod
    def init(
        cls,
        path: Path,
        *,
        municipality: str | None = None,
        invocation: Invocation | None = None,
    ) -> Ledger:
        """Create a new, empty ledger; refuse if anything already sits at ``path``.

        Its audit trail starts with a record of transaction 0: who created the
        ledger, for which municipality.
        """
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise LedgerError(
                f"{path} already exists and is not an empty folder; a new ledger needs a "
                "fresh path (an existing ledger is never overwritten)."
            )
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        os.chmod(path, PRIVATE_DIR)
        (path / SEGMENTS).mkdir(mode=PRIVATE_DIR, exist_ok=True)
        os.chmod(path / SEGMENTS, PRIVATE_DIR)
        fd = os.open(path / LOCK, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
        os.close(fd)
        ledger = cls(path)
        invocation = invocation or Invocation()
        created = _now().isoformat()
        place = new_place(path, uuid.uuid4().hex)
        genesis = seal(
            {
                "txn": 0,
                "at": created,
                "operator": invocation.operator,
                "command": list(invocation.command),
                "inputs": [],
                "outputs": [],
                "counts": {},
                "segments": [],
                "municipality": municipality,
                PLACE: place,
                "prev": "",
            }
        )
        _write_private_json(
            ledger.manifest_path,
            {
                "format": FORMAT,
                "version": VERSION,
                "created_at": created,
                "municipality": municipality,
                "txn": 0,
                "segments": [],
                TRANSACTIONS: [genesis],
            },
        )
        return ledger

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open an existing ledger; refuse anything else, never create one."""
        path = Path(path)
        if not path.exists():
            raise LedgerError(
                f"There is no ledger at {path}. Create one with `rrnet ledger init {path}` "
                "(only once: a second, empty ledger is how duplicate codes happen)."
            )
        if not path.is_dir():
            raise LedgerError(f"{path} is a file, not a ledger folder.")
        ledger = cls(path)
        if not ledger.manifest_path.exists():
            raise LedgerError(f"{path} is not an rrnet ledger (it has no {MANIFEST}).")
        ledger.read_manifest()
        return ledger

    def read_manifest(self) -> dict[str, Any]:
        """The committed manifest, checked for shape."""
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LedgerError(
                f"The ledger's manifest {self.manifest_path} cannot be read ({exc}); "
                "restore the ledger from backup."
            ) from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise LedgerError(f"{self.path} is not an rrnet ledger (unknown manifest format).")
        if manifest.get("version") not in READABLE_VERSIONS:
            raise LedgerError(
                f"{self.path} is a version {manifest.get('version')} ledger; this rrnet "
                f"reads versions {', '.join(map(str, READABLE_VERSIONS))}."
            )
        problem = _manifest_problem(manifest)
        if problem:
            raise LedgerError(
                f"The ledger's manifest {self.manifest_path} is damaged ({problem}); "
                "nothing was changed. Restore the ledger from backup."
            )
        return manifest

    @property
    def location(self) -> str:
        return str(self.path)

    # -- its place ------------------------------------------------------------

    def misplaced(self, manifest: Mapping[str, Any] | None = None) -> Misplaced | None:
        """Why this folder is not its ledger's place, or None (see the module docstring).

        A ledger never bound (from before the binding) is in place: its first
        write binds it.
        """
        if manifest is None:
            manifest = self.read_manifest()
        place = latest_place(manifest.get(TRANSACTIONS) or [])
        if place is None:
            return None
        here = os.path.realpath(self.path)
        bound = str(place.get("path"))
        mark = place.get("mark")
        recorded = mark if isinstance(mark, dict) else None
        marked = recorded is not None and _mark_of(self.path) == recorded
        if marked and (here == bound or _same_folder(bound, self.path)):
            return None
        original = (
            recorded is not None
            and not _same_folder(bound, self.path)
            and _mark_of(Path(bound)) == recorded
        )
        if original:
            what = (
                f"The ledger folder {here} is a copy, made by hand, of the ledger at "
                f"{bound}, which is still there."
            )
        elif here == bound:
            what = (
                f"The ledger folder {here} is not the folder the ledger was bound to: it was "
                "replaced (restored from a backup, or copied back) since."
            )
        elif marked:
            what = f"The ledger folder {here} was moved by hand from {bound}."
        else:
            what = (
                f"The ledger folder {here} is a copy, made by hand, or a restored backup of "
                f"the ledger that was at {bound}."
            )
        return Misplaced(here, bound, str(place.get("ledger")), what, original)

    def refuse_misplaced(self, manifest: Mapping[str, Any] | None = None) -> None:
        """Refuse to write anywhere but at the ledger's place (``misplaced``)."""
        problem = self.misplaced(manifest)
        if problem is not None:
            raise LedgerError(problem.refusal())

    def relocate(
        self,
        *,
        close_original: bool = False,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        invocation: Invocation | None = None,
        waiting: Waiting | None = None,
    ) -> Relocation:
        """Bind the ledger to this folder (``rrnet ledger relocate``), in a transaction
        of its own under the lock: a fresh place mark, and a record naming it and the
        place before. A ledger at its place already is left as it is.

        While the folder it is bound to still holds it and accepts writes, this is
        refused: two folders that both accept writes hand out second codes. With
        ``close_original`` that folder is closed first (``close``, in its own audit
        trail; it stays readable), then this one is bound. A crash between the two
        leaves the original closed and this folder unbound: run it again.
        """
        with self.lock(timeout, waiting):
            manifest = self.read_manifest()
            refuse_moved(manifest, self.path)
            before = latest_place(manifest.get(TRANSACTIONS) or [])
            problem = self.misplaced(manifest)
            if before is not None and problem is None:
                return Relocation(
                    str(self.path), str(before.get("ledger")), None, None, False, False
                )
            closed_original = False
            if problem is not None and problem.original_in_place:
                original = Ledger(Path(problem.bound))
                if MOVED_TO not in original.read_manifest():
                    if not close_original:
                        raise LedgerError(
                            f"{problem.bound} still holds this ledger and accepts writes: "
                            "two folders that both accept writes hand out second codes. If "
                            "the ledger is to live here from now on, run `rrnet ledger "
                            f"relocate --ledger {problem.here} --close-original`: it closes "
                            f"{problem.bound} (kept for reading only) and binds this folder, "
                            f"recorded in both audit trails. If {problem.bound} is the "
                            "ledger, go on using it and delete this copy; for a second, new "
                            "ledger use `rrnet ledger copy`. Nothing was changed."
                        )
                    original.close(
                        problem.here, timeout=timeout, invocation=invocation, waiting=waiting
                    )
                    closed_original = True
            self._sweep(manifest)
            txn = Transaction(self, manifest)
            txn.describe(invocation)
            ledger_id = str(before["ledger"]) if before else uuid.uuid4().hex
            try:
                txn.place = new_place(self.path, ledger_id)
                txn.commit()
            except BaseException:
                txn.abort()
                raise
            return Relocation(
                str(self.path),
                ledger_id,
                None if before is None else str(before.get("path")),
                txn.number,
                problem is not None and problem.original_in_place and not closed_original,
                True,
                closed_original,
            )

    def close(
        self,
        moved_to: str,
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        invocation: Invocation | None = None,
        waiting: Waiting | None = None,
    ) -> int:
        """Close this ledger for writing because it now lives at ``moved_to``: one
        transaction of its own, under the lock, whose record and manifest say where it
        went (``MOVED_TO``). Its writers then refuse (``refuse_moved``); it stays
        readable. Returns the transaction's number."""
        with self.lock(timeout, waiting):
            manifest = self.read_manifest()
            refuse_moved(manifest, self.path)
            return self.close_locked(manifest, moved_to, invocation)

    def close_locked(
        self, manifest: dict[str, Any], moved_to: str, invocation: Invocation | None
    ) -> int:
        """``close``, for a caller that holds the lock already (``ledger copy --move``)."""
        txn = Transaction(self, manifest)
        txn.describe(invocation)
        txn.settings[MOVED_TO] = {"ledger": moved_to, "at": txn.recorded_at.isoformat()}
        try:
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        return txn.number

    @property
    def municipality(self) -> str | None:
        value = self.read_manifest().get("municipality")
        return None if value is None else str(value)

    @property
    def municipalities(self) -> tuple[str, ...]:
        """A folder ledger serves the one municipality it was made for."""
        own = self.municipality
        return (own,) if own else ()

    @property
    def served(self) -> tuple[str, ...]:
        return self.municipalities

    # -- reading --------------------------------------------------------------

    def snapshot(self) -> LedgerState:
        """Load the ledger as of its committed manifest (no lock needed)."""
        return self._load(self.read_manifest())

    def notice_records(self) -> tuple[pl.DataFrame, list[Any]]:
        """Every notice issued, and the audit trail's records (``rrnet ledger notices``)."""
        from rrnet_cli.ledger.audit import TRANSACTIONS

        state = self.snapshot()
        return state.notices, list(state.manifest.get(TRANSACTIONS) or [])

    @contextlib.contextmanager
    def reading(self) -> Iterator[LedgerState]:
        """The committed ledger, loaded into memory (``LedgerState`` answers every
        ``LedgerView`` question); no lock is held."""
        yield self.snapshot()

    def _segment_path(self, info: dict[str, Any]) -> Path:
        name = Path(info["file"]).name
        return self.segments_path / name

    def _load(self, manifest: dict[str, Any]) -> LedgerState:
        by_status: dict[str | None, list[list[np.ndarray]]] = {}
        record_tables = []
        pool_segments: list[list[np.ndarray]] = []
        notice_tables = []
        for info in manifest["segments"]:
            path = self._segment_path(info)
            try:
                if is_notice_segment(info):  # notices issued: not codes, kept apart
                    notice_tables.append(pq.read_table(path, schema=NOTICE_SCHEMA))
                    continue
                if is_pool_segment(info):  # designated, not used: kept out of the used-code index
                    table = pq.read_table(path, columns=["code"])
                    pool_segments.append([c.to_numpy() for c in table.column("code").chunks])
                    continue
                if info["has_residents"] or len(info["statuses"]) != 1:
                    table = pq.read_table(path, schema=RECORD_SCHEMA)
                    record_tables.append(table)
                    key: str | None = None
                else:
                    table = pq.read_table(path, columns=["code"])
                    key = next(iter(info["statuses"]))
            except (OSError, pa.ArrowException) as exc:
                raise LedgerError(
                    f"Ledger segment {path.name} cannot be read ({exc}); run "
                    f"`rrnet verify --ledger {self.path}` and restore from backup."
                ) from None
            # Zero-copy: one NumPy view per row group (no nulls in ``code``).
            chunks = [c.to_numpy() for c in table.column("code").chunks]
            by_status.setdefault(key, []).append(chunks)
        groups: list[tuple[SortedCodes, str | None]] = []
        for key, segments in by_status.items():
            small = [
                c for chunks in segments if sum(map(len, chunks)) < _SMALL_SEGMENT for c in chunks
            ]
            groups.extend(
                (SortedCodes(chunks), key)
                for chunks in segments
                if sum(map(len, chunks)) >= _SMALL_SEGMENT
            )
            if small:
                groups.append((SortedCodes([np.sort(np.concatenate(small))]), key))
        if record_tables:
            records = pl.from_arrow(pa.concat_tables(record_tables))
        else:
            records = pl.from_arrow(RECORD_SCHEMA.empty_table())
        assert isinstance(records, pl.DataFrame)
        notices = pl.from_arrow(pa.concat_tables(notice_tables)) if notice_tables else None
        assert notices is None or isinstance(notices, pl.DataFrame)
        return LedgerState(
            manifest=manifest,
            codes=CodeIndex(groups),
            records=records,
            pool=_one_sorted(pool_segments),
            notices=notices if notices is not None else empty_notices(),
        )

    # -- writing --------------------------------------------------------------

    @contextlib.contextmanager
    def lock(
        self, timeout: float = DEFAULT_LOCK_TIMEOUT, waiting: Waiting | None = None
    ) -> Iterator[None]:
        """Hold the ledger's write lock; wait up to ``timeout`` seconds for it.

        ``waiting`` is told once when the lock is still held by another run
        after ``WAIT_NOTICE_AFTER`` seconds, so that a waiting run says so.
        """
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        try:
            started = time.monotonic()
            deadline = started + timeout
            announced = waiting is None
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                        raise LedgerBusy(
                            f"The ledger {self.path} is in use by another run "
                            f"({holder or 'unknown process'}); waited {timeout:g} s. "
                            "Try again when it has finished."
                        ) from None
                    if not announced and time.monotonic() - started >= WAIT_NOTICE_AFTER:
                        announced = True
                        assert waiting is not None
                        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                        waiting(
                            f"Waiting for the ledger {self.path}: another run "
                            f"({holder or 'unknown process'}) is writing to it; waiting up to "
                            f"{timeout:g} s (--lock-timeout)."
                        )
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {_now().isoformat()}".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    @contextlib.contextmanager
    def transaction(
        self, *, timeout: float = DEFAULT_LOCK_TIMEOUT, waiting: Waiting | None = None
    ) -> Iterator[Transaction]:
        """One all-or-nothing change: lock, read, stage segments, commit the manifest."""
        with self.lock(timeout, waiting):
            manifest = self.read_manifest()
            refuse_moved(manifest, self.path)
            self.refuse_misplaced(manifest)
            self._sweep(manifest)
            txn = Transaction(self, manifest)
            txn.bind = latest_place(manifest.get(TRANSACTIONS) or []) is None
            try:
                yield txn
                with naming(self.path):  # a full disk names the ledger
                    txn.commit()
            except BaseException:
                txn.abort()  # staged segments go; the manifest never named them
                raise

    def _sweep(self, manifest: dict[str, Any]) -> None:
        """Remove segment files a crashed run left outside the manifest (lock held).

        Only files of a transaction *after* the committed one can be leftovers; a
        file of a committed transaction that the manifest does not name means the
        manifest lost it, and deleting it would forget used codes.
        """
        live = {Path(s["file"]).name for s in manifest["segments"]}
        for path in self.segments_path.glob("*"):
            if path.name in live:
                continue
            if segment_txn(path.name) <= manifest["txn"]:
                raise LedgerError(
                    f"Segment {path.name} belongs to a committed transaction but the "
                    "manifest does not name it: the ledger is damaged; nothing was changed. "
                    "Restore the ledger from backup."
                )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for pattern in (f".{MANIFEST}.*.tmp", f".{PLACE_MARK}.*.tmp"):
            for path in self.path.glob(pattern):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def retire(
        self,
        codes: list[str],
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        invocation: Invocation | None = None,
    ) -> int:
        """Mark codes retired. They stay used forever.

        (``rrnet change`` retires a resident's code and draws the new one in one
        transaction; see ``rrnet_cli.change``.)
        """
        ints = rcode.strings_to_codes([rcode.validate(c) for c in codes])
        with self.transaction(timeout=timeout) as txn:
            txn.describe(invocation)
            found = txn.state.lookup(ints)
            unknown = found.filter(pl.col("status").is_null()).height
            if unknown:
                raise LedgerError(f"{unknown} of the codes to retire are not in the ledger.")
            txn.add_records(
                pl.DataFrame(
                    {
                        "code": ints,
                        "status": Status.RETIRED.value,
                        "municipality": found["municipality"],
                        "resident_id": found["resident_id"],
                    }
                )
            )
        return len(ints)

    # -- reporting ------------------------------------------------------------

    def check_integrity(self) -> IntegrityReport:
        """Stream every segment and check it against the manifest (see ``check_integrity``)."""
        # integrity.py reads the folder's own layout, so it imports this module.
        from rrnet_cli.ledger.integrity import check_integrity

        return check_integrity(self)

    def audit_log(self) -> AuditLog:
        """The audit trail of the committed manifest, its chain checked (see ``check_chain``)."""
        return check_chain(self.read_manifest())

    def stats(self) -> dict[str, Any]:
        """Counts by current status, the designated pool, and the ledger's size on disk.

        ``pool``: its size (``designated``), how many of those codes are used
        (any status), how many are ``left``, and whether pool mode is on.
        """
        state = self.snapshot()
        current = state.current_records()
        counts: dict[str, int] = {s.value: 0 for s in Status}
        for status, n in current.group_by("status").len().iter_rows():
            counts[status] = counts.get(status, 0) + int(n)
        fixed_codes = [a for a, s in state.codes.groups if s is not None]
        fixed_status = [s for _, s in state.codes.groups if s is not None]
        if len(current):
            per_record_codes = current["code"].to_numpy()
        else:
            per_record_codes = np.empty(0, np.uint64)
        for codes, status in zip(fixed_codes, fixed_status, strict=True):
            # Codes both imported and later carried over count once, as carried over.
            overlap = int(codes.member(np.sort(per_record_codes)).sum())
            counts[status] = counts.get(status, 0) + len(codes) - overlap
        size = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        pool_used = int(np.count_nonzero(state.pool_used()))
        return {
            "ledger": str(self.path),
            "municipality": state.manifest.get("municipality"),
            "transactions": state.txn,
            "segments": len(state.manifest["segments"]),
            "codes_used": sum(counts.values()),
            "by_status": counts,
            "pool": {
                "mode": on_off(state.pool_mode),
                "designated": len(state.pool),
                "used": pool_used,
                "left": len(state.pool) - pool_used,
            },
            "bytes_on_disk": size,
            # codes drawn here that no notify run has printed a first notice of yet
            "first_notice_due": first_notices_due(state, self.municipalities),
        }


class Transaction:
    """Records staged by one run; committed together or not at all."""

    def __init__(self, ledger: Ledger, manifest: dict[str, Any]) -> None:
        self.ledger = ledger
        self.manifest = manifest
        self.number = int(manifest["txn"]) + 1
        self.recorded_at = _now()
        self.staged: list[SegmentInfo] = []
        self._state: LedgerState | None = None
        self.invocation = Invocation()
        self.audit: dict[str, Any] = {"inputs": [], "outputs": []}
        #: manifest settings this transaction changes (``pool_mode``); its record says so
        self.settings: dict[str, Any] = {}
        #: the place this transaction binds the ledger to (its record says so): set
        #: by ``Ledger.relocate``, or at commit when ``bind`` (a ledger never bound)
        self.place: dict[str, Any] | None = None
        self.bind = False

    def describe(
        self,
        invocation: Invocation | None = None,
        *,
        inputs: Sequence[Mapping[str, str]] = (),
        outputs: Sequence[Mapping[str, str]] = (),
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Say who ran what, for the audit record that ``commit`` writes.

        ``inputs`` and ``outputs`` are ``file_digest`` entries (an output is
        hashed before the commit, in its temporary file). ``details`` are the
        command's own keys (a code change's ``changes``); they may not replace
        the record's own fields.
        """
        self.audit = audit_details(inputs, outputs, details)
        if invocation is not None:
            self.invocation = invocation

    def _audit_record(self) -> dict[str, Any]:
        """This transaction's audit record, linked to the last one and sealed."""
        previous = self.manifest.get(TRANSACTIONS) or []
        last = previous[-1] if previous else None
        prev = last.get("hash") if isinstance(last, dict) else None
        counts: dict[str, int] = {}
        for info in self.staged:
            for status, n in info.statuses.items():
                counts[status] = counts.get(status, 0) + int(n)
        return seal(
            {
                "txn": self.number,
                "at": self.recorded_at.isoformat(),
                "operator": self.invocation.operator,
                "command": list(self.invocation.command),
                **self.audit,
                **self.settings,
                **({PLACE: self.place} if self.place is not None else {}),
                "counts": counts,
                "segments": [
                    {"file": s.file, "sha256": s.sha256, "rows": s.rows} for s in self.staged
                ],
                "prev": prev if isinstance(prev, str) else "",
            }
        )

    @property
    def state(self) -> LedgerState:
        """The ledger as this transaction found it (read under the lock)."""
        if self._state is None:
            self._state = self.ledger._load(self.manifest)
        return self._state

    def view(self) -> LedgerState:
        """The ledger as read under the lock, in memory: it answers ``LedgerView``."""
        return self.state

    def record_new(self, records: pl.DataFrame) -> np.ndarray:
        """Stage ``records`` as one segment; nothing conflicts, so none is returned.

        The new codes were drawn against every used code in memory
        (``LedgerState.used_codes``), and the carried-over ones classified
        against the same state, read under this transaction's lock: no other
        run can have used one since. Searching them again would only cost time
        (the folder path stays as fast as before the store interface changed).
        """
        self.add_records(records)
        return np.empty(0, np.uint64)

    def record_change(self, records: pl.DataFrame) -> np.ndarray:
        """Stage code changes as one segment; the new codes were drawn against every
        used code under the lock, so none is refused."""
        self.add_records(records)
        return np.empty(0, np.uint64)

    def add_records(self, records: pl.DataFrame) -> SegmentInfo | None:
        """Stage records (``code`` plus ``status``, ``municipality``, ``resident_id``)."""
        if records.height == 0:
            return None
        frame = records.select(
            pl.col("code").cast(pl.UInt64),
            pl.col("status").cast(pl.String),
            (pl.col("municipality") if "municipality" in records.columns else pl.lit(None))
            .cast(pl.String)
            .alias("municipality"),
            (pl.col("resident_id") if "resident_id" in records.columns else pl.lit(None))
            .cast(pl.String)
            .alias("resident_id"),
            pl.lit(self.number, dtype=pl.UInt64).alias("txn"),
            pl.lit(self.recorded_at).cast(pl.Datetime("ms", "UTC")).alias("recorded_at"),
        ).sort("code")
        statuses = {s: int(n) for s, n in frame.group_by("status").len().iter_rows()}
        unknown = set(statuses) - {s.value for s in Status}
        if unknown:
            raise ValueError(f"unknown ledger status {sorted(unknown)}")
        has_residents = bool(frame["resident_id"].is_not_null().any())
        table = frame.to_arrow().cast(RECORD_SCHEMA)
        return self._write_segment(table, statuses, has_residents)

    def record_ids_fixed(self, records: pl.DataFrame) -> None:
        """Stage the codes' records under their residents' correct ids as one segment:
        segments are never rewritten, so each code's new record supersedes the old."""
        self.add_records(records)

    def add_codes(self, codes: np.ndarray, status: Status) -> SegmentInfo | None:
        """Stage a large batch of sorted, distinct codes that share one status (imports).

        Such a segment holds only the ``code`` column: its status and transaction
        live in the manifest, so 100 million imported codes cost ~1.6 bytes each.
        """
        if len(codes) == 0:
            return None
        table = pa.table({"code": pa.array(np.asarray(codes, np.uint64), pa.uint64())})
        return self._write_segment(table, {status.value: len(codes)}, False)

    def add_pool(self, codes: np.ndarray, municipality: str) -> SegmentInfo | None:
        """Stage sorted, distinct designated codes as a pool segment.

        The caller (``rrnet_cli.pool.designate_codes``) has checked that none is
        used or already designated. Like an import's, the segment holds only
        the ``code`` column; its manifest entry says ``{"designated": n}``. The
        pool is the ledger's one municipality's (``municipality`` must be it).
        """
        self._own(municipality)
        if len(codes) == 0:
            return None
        table = pa.table({"code": pa.array(np.asarray(codes, np.uint64), pa.uint64())})
        return self._write_segment(table, {DESIGNATED: len(codes)}, False)

    def add_notices(self, notices: pl.DataFrame) -> SegmentInfo | None:
        """Stage notice records: ``code``, ``resident_id``, ``municipality``, ``kind``,
        ``reprint_reason``, ``batch``, ``file``, ``page`` (see ``rrnet_cli.ledger.notices``).

        They are sorted by code; the transaction number and time are this
        transaction's.
        """
        if notices.height == 0:
            return None
        frame = notices.select(
            pl.col("code").cast(pl.UInt64),
            *(pl.col(c).cast(pl.String) for c in ("resident_id", "municipality", "kind")),
            pl.col("reprint_reason").cast(pl.String),
            *(pl.col(c).cast(pl.String) for c in ("batch", "file")),
            pl.col("page").cast(pl.Int32),
            pl.lit(self.number, dtype=pl.UInt64).alias("txn"),
            pl.lit(self.recorded_at).cast(pl.Datetime("ms", "UTC")).alias("issued_at"),
        ).sort("code", maintain_order=True)
        kinds = set(frame["kind"].to_list()) - {k.value for k in NoticeKind}
        if kinds:
            raise ValueError(f"unknown notice kind {sorted(kinds, key=str)}")
        return self._write_segment(
            frame.to_arrow().cast(NOTICE_SCHEMA), {NOTICE: frame.height}, True
        )

    def set_pool_mode(self, on: bool, municipality: str) -> None:
        """Turn pool mode on or off: the manifest and this transaction's record say so."""
        self._own(municipality)
        self.settings[POOL_MODE] = bool(on)

    def _own(self, municipality: str) -> None:
        """A folder ledger's pool is its own municipality's: refuse another (a caller's
        mistake: the commands resolve the municipality with ``municipality_for``)."""
        own = self.manifest.get("municipality")
        if own is not None and str(own) != municipality:
            raise ValueError(f"this ledger serves {own}, not {municipality}")

    def _write_segment(
        self, table: pa.Table, statuses: dict[str, int], has_residents: bool
    ) -> SegmentInfo:
        name = f"{self.number:08d}-{len(self.staged):04d}-{uuid.uuid4().hex[:12]}.parquet"
        path = self.ledger.segments_path / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        os.close(fd)
        info = SegmentInfo(
            file=f"{SEGMENTS}/{name}",
            txn=self.number,
            rows=table.num_rows,
            bytes=0,
            sha256="",
            statuses=statuses,
            has_residents=has_residents,
        )
        self.staged.append(info)  # staged first, so abort() removes a half-written file
        # Sorted codes delta-encode to ~1.6 bytes each and decode fastest without
        # a general-purpose codec on top (measured: 100M codes, 161 MB, 0.5 s).
        with naming(path):  # Arrow names no file: "Error writing bytes to file..."
            pq.write_table(
                table,
                path,
                compression={n: ("none" if n == "code" else "zstd") for n in table.column_names},
                use_dictionary=[n for n in table.column_names if n != "code"],
                column_encoding={"code": "DELTA_BINARY_PACKED"},
                row_group_size=8_000_000,
            )
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
        info.bytes = path.stat().st_size
        info.sha256 = file_sha256(path)
        return info

    def commit(self) -> None:
        """Publish the staged segments and settings with one atomic manifest replace."""
        if not self.staged and not self.settings and self.place is None:
            return
        if self.bind and self.place is None:  # a ledger never bound: its first write binds it
            self.place = new_place(self.ledger.path, uuid.uuid4().hex)
        fsync_dir(self.ledger.segments_path)
        _failpoint("before-manifest-write")
        manifest = dict(self.manifest)
        manifest.update(self.settings)
        manifest["txn"] = self.number
        manifest["segments"] = [*self.manifest["segments"], *(s.to_json() for s in self.staged)]
        records = [*(self.manifest.get(TRANSACTIONS) or []), self._audit_record()]
        # A version 1 manifest gains its audit trail here; one with a pool becomes 3,
        # one with notice records 4, a relocated one 6.
        manifest["version"] = (
            RELOCATED_VERSION
            if any(_relocates(r) for r in records)
            else MOVED_VERSION
            if MOVED_TO in manifest
            else NOTICE_VERSION
            if any(is_notice_segment(s) for s in manifest["segments"])
            else POOL_VERSION
            if _uses_pool(manifest)
            else VERSION
        )
        manifest[TRANSACTIONS] = records
        _write_private_json(self.ledger.manifest_path, manifest)
        _failpoint("after-manifest-replace")
        self.manifest = manifest
        self.staged = []
        self.settings = {}

    def abort(self) -> None:
        """Remove staged segment files; the manifest never named them."""
        for info in self.staged:
            with contextlib.suppress(FileNotFoundError):
                self.ledger._segment_path(info.to_json()).unlink()
        self.staged = []


def refuse_moved(manifest: Mapping[str, Any], path: Path) -> None:
    """Refuse to write to a ledger closed by ``rrnet ledger copy --move``."""
    moved = manifest.get(MOVED_TO)
    if moved is None:
        return
    where = moved.get("ledger") if isinstance(moved, dict) else None
    when = moved.get("at") if isinstance(moved, dict) else None
    raise LedgerError(
        f"The ledger {path} was moved to {where} ({when}, with `rrnet ledger copy "
        "--move` or `rrnet ledger relocate --close-original`) and is closed: run this "
        "against that ledger. This one is kept for reading only (stats, log, verify): "
        "two ledgers in use is how duplicate codes happen."
    )


@dataclass(frozen=True)
class Relocation:
    """What ``rrnet ledger relocate`` did."""

    ledger: str
    ledger_id: str
    #: the place it was bound to before (None: never bound, or unchanged)
    moved_from: str | None
    #: the transaction that recorded it (None: the folder was the ledger's place already)
    transaction: int | None
    #: the place before still holds the ledger, bound there: it still accepts writes
    original_in_place: bool
    changed: bool
    #: the place before was closed for writing (``--close-original``)
    closed_original: bool = False


def _relocates(record: Any) -> bool:
    """Whether an audit record is a transaction that only binds the ledger to a place."""
    return (
        isinstance(record, dict)
        and isinstance(record.get(PLACE), dict)
        and record.get("segments") == []
        and record.get("txn") != 0
        and COPIED_FROM not in record
    )


def is_pool_segment(info: Mapping[str, Any]) -> bool:
    """Whether a manifest's segment entry is a pool segment (designated codes)."""
    return not info.get("has_residents") and list(info.get("statuses") or {}) == [DESIGNATED]


def _uses_pool(manifest: Mapping[str, Any]) -> bool:
    return POOL_MODE in manifest or any(is_pool_segment(s) for s in manifest["segments"])


def _one_sorted(segments: list[list[np.ndarray]]) -> np.ndarray:
    """One sorted array of the codes of sorted segments (each a list of row-group chunks)."""
    chunks = [c for chunks in segments for c in chunks if len(c)]
    if not chunks:
        return np.empty(0, np.uint64)
    if len(segments) == 1:  # consecutive ranges of one sorted sequence
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    merged = np.concatenate(chunks)
    merged.sort(kind="stable")  # a merge of sorted runs
    return merged


_SEGMENT_KEYS = {
    "file": str,
    "txn": int,
    "rows": int,
    "bytes": int,
    "sha256": str,
    "statuses": dict,
    "has_residents": bool,
}


def segment_txn(name: str) -> int:
    """The transaction number a segment file name starts with (0 if it has none)."""
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def _manifest_problem(manifest: Any) -> str | None:
    """Why a manifest cannot be trusted, or None.

    Every committed transaction adds at least one segment, except one that only
    changes pool mode or closes the ledger (its audit record says so and names no
    segment), so the
    segments' transaction numbers must be exactly 1..txn but for those: a
    shortened list is caught.
    """
    txn = manifest.get("txn")
    segments = manifest.get("segments")
    if not isinstance(txn, int) or isinstance(txn, bool) or txn < 0:
        return "txn is not a transaction number"
    if not isinstance(segments, list):
        return "segments is not a list"
    for entry in segments:
        if not isinstance(entry, dict):
            return "a segment entry is not an object"
        for key, kind in _SEGMENT_KEYS.items():
            if not isinstance(entry.get(key), kind):
                return f"a segment entry lacks a valid {key!r}"
        if Path(entry["file"]).name != entry["file"].removeprefix(f"{SEGMENTS}/"):
            return "a segment entry names a file outside the segments folder"
    if not isinstance(manifest.get(TRANSACTIONS, []), list):
        return f"{TRANSACTIONS} is not a list"
    if not isinstance(manifest.get(POOL_MODE, False), bool):
        return f"{POOL_MODE} is not true or false"
    numbered = {entry["txn"] for entry in segments}
    expected = set(range(1, txn + 1))
    if not numbered <= expected or expected - numbered - _setting_txns(manifest):
        return f"the segments do not account for transactions 1..{txn}"
    return None


def _setting_txns(manifest: Mapping[str, Any]) -> set[int]:
    """Transactions whose audit record only changes pool mode, closes the ledger
    (``rrnet ledger copy --move``) or binds it to its folder (``rrnet ledger
    relocate``): they add no segment.

    In a copied ledger also the copy's own record and every transaction before
    it (``audit.copy_boundary``): the copy record names every segment they have,
    and a transaction made in a database may have added none (adding a
    municipality, an upgrade).
    """
    records = manifest.get(TRANSACTIONS) or []
    boundary = copy_boundary(records)
    return {
        r["txn"]
        for r in records
        if isinstance(r, dict)
        and isinstance(r.get("txn"), int)
        and (
            (
                r.get("segments") == []
                and (
                    isinstance(r.get(POOL_MODE), bool)
                    or isinstance(r.get(MOVED_TO), dict)
                    or isinstance(r.get(PLACE), dict)
                )
            )
            or (boundary is not None and r["txn"] <= boundary)
        )
    }


def _now() -> datetime:
    return datetime.now(UTC)
