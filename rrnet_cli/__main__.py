"""``python -m rrnet_cli`` runs the same CLI as ``rrnet``."""

from rrnet_cli.cli import main

main()
