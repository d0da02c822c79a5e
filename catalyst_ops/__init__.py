"""Operations layer for the Catalyst Trading System."""

__version__ = "0.1.0"
