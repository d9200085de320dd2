"""Failures the service explains in one line: what is wrong and what to do."""

from __future__ import annotations


class ServiceError(Exception):
    """A failure with a message for the person on call and a hint for what to do."""

    #: Exit status of the command line for this kind of failure.
    exit_code = 1
    #: Whether trying again later may succeed (the consumer nacks these).
    transient = False

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ConfigError(ServiceError):
    """A setting is missing or out of range."""

    exit_code = 2


class DatabaseRefused(ConfigError):
    """The database turned the service away for one of the service's settings: a setting to fix, not an outage.

    Retrying cannot succeed, and the database cannot be written to meanwhile
    (so a consumer rejects the request without recording it there).
    """


class DatabaseLoginRefused(DatabaseRefused):
    """The database refused the service's credentials (a wrong password, a missing user or IAM grant)."""


class DatabaseTLSMismatch(DatabaseRefused):
    """The connection's TLS settings (``sslmode``) and the server's do not agree, or its certificate does not verify."""


class DatabaseMissing(DatabaseRefused):
    """The server answers, but the database the settings name is not on it."""


class UnknownScope(ConfigError):
    """A request names a scope that no question of the bank has: a typo or a stale name, not a quiet week."""


class DatabaseUnavailable(ServiceError):
    """The database cannot be reached or refused the connection."""

    exit_code = 3
    transient = True


class PlatformSchemaError(ServiceError):
    """The platform's ``attempt`` or ``question`` table lacks what SPEC says it has."""

    exit_code = 4


class RunLockBusy(ServiceError):
    """Another calibration holds the run lock."""

    exit_code = 75  # EX_TEMPFAIL
    transient = True


class RunLockLost(ServiceError):
    """The run lock's connection dropped mid-run and another run may hold the lock now."""

    exit_code = 75  # EX_TEMPFAIL
    transient = True


class CalibrationRefused(ServiceError):
    """The data cannot give a calibration worth writing (too few anchors, anchors mostly drifting)."""
