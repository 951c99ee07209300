"""The exceptions rrnet raises for things a user can fix, with their exit codes.

The CLI catches ``RrnetError`` at the edge and prints its message; anything else
is a bug and shows as one.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2

#: Seconds a run waits for another run to let go of the ledger before it gives
#: up with ``LedgerBusy`` (every command that writes to the ledger).
DEFAULT_LOCK_TIMEOUT = 600.0


class RrnetError(Exception):
    """An expected failure with a message meant for the person running rrnet."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class UsageError(RrnetError):
    """Bad options or an input file that cannot be used at all (exit 2)."""


class InputRowsError(RrnetError):
    """Rows of the export break the rules; nothing was written (exit 2)."""

    def __init__(
        self, message: str, *, errors: list[dict[str, object]], details: list[str] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.errors = errors


class LedgerError(RrnetError):
    """The ledger is missing, not a ledger, damaged or locked (exit 2)."""


class LedgerBusy(LedgerError):
    """Another run holds the ledger's lock and did not let go in time."""
