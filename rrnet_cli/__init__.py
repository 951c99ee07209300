"""rrnet: resident record codes (住民票コード) for a municipality's foreign residents."""

from importlib.metadata import PackageNotFoundError, version

try:
    #: The installed distribution's version (pyproject.toml is its one source).
    __version__ = version("rrnet")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
