"""The ``rrnet`` command, and ``python -m rrnet_cli``: the CLI, with Ctrl-C handled
from the first instant.

Loading the CLI takes a few tenths of a second (Polars, Arrow, Typer). Ctrl-C
meanwhile, or after the command has ended, must not show a traceback: until a
command starts its work (``handle_errors`` takes Ctrl-C over then, and cleans
up what the command started), Ctrl-C ends rrnet with a one-line message and
exit code 130, before anything was written. A command whose work is done
(``_common.work_done``) keeps its exit code whenever Ctrl-C comes after.
"""

import os
import signal
import sys

#: The exit code of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


def stop_quietly(_signum: int, _frame: object) -> None:
    """Ctrl-C outside a command's own handling: a message and exit 130, no traceback."""
    os.write(2, b"Interrupted.\n")
    for stream in (sys.stdout, sys.stderr):  # what the command printed, if it ended
        try:
            stream.flush()
        except Exception:  # a stream closed or busy: nothing more to save
            pass
    os._exit(EXIT_INTERRUPTED)


def main() -> None:
    """Console-script entry point: install the Ctrl-C handler, then load and run the CLI."""
    signal.signal(signal.SIGINT, stop_quietly)
    import atexit

    # The first registered, so the last run: from here to the end of the process
    # (the interpreter's own teardown, where no Python handler runs any more), a
    # Ctrl-C cannot turn a finished run into one killed by SIGINT.
    atexit.register(signal.signal, signal.SIGINT, signal.SIG_IGN)
    import logging

    # psycopg logs, for its developers, a rollback it could not do on a connection
    # that Ctrl-C interrupted mid-query; the server rolls the transaction back when
    # the connection closes, and the person at the terminal reads rrnet's own line.
    logging.getLogger("psycopg").addHandler(logging.NullHandler())
    from rrnet_cli.cli import main as run

    run()


if __name__ == "__main__":
    main()
