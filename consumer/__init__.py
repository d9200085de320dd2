"""Event-driven IRT item calibration: answers in PostgreSQL in, linked item parameters and abilities out."""

__version__ = "0.1.0"
