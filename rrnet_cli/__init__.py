"""rrnet: resident record codes (住民票コード) for a municipality's foreign residents."""

__version__ = "0.1.0"
