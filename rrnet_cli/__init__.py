"""rrnet: resident record codes (住民票コード) for a municipality's foreign residents."""


def __getattr__(name: str) -> str:
    # The version is looked up when asked for, not on import: importing the package
    # stays instant, so that the ``rrnet`` command can take over Ctrl-C at once
    # (see ``rrnet_cli.__main__``).
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        #: The installed distribution's version (pyproject.toml is its one source).
        return version("rrnet")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"
