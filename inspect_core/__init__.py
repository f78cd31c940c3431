"""inspect-core: fabric defect inspection with Florence-2."""

__version__ = "0.1.0"
