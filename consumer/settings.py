"""Every setting of the service: its environment variable, default, meaning and check.

Settings are read once, from the environment, then overridden by command-line
flags or a request's overrides, and validated in one place. A bad value is a
``ConfigError`` that names the variable, the value and what is allowed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError
from .irt import bank, defaults, linking, rapid, scoring_names
from .irt.model import MODELS, model_name
from .irt.quadrature import DEFAULT_POINTS

APP_NAME = "irt-calibration"


def _positive_int(text: str) -> int:
    value = int(str(text).strip().replace("_", ""))
    if value <= 0:
        raise ValueError
    return value


def _positive_float(text: str) -> float:
    value = float(str(text).strip())
    if not value > 0 or value == float("inf"):
        raise ValueError
    return value


def _non_negative_float(text: str) -> float:
    value = float(str(text).strip())
    if not 0 <= value < float("inf"):
        raise ValueError
    return value


def _boolean(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError


def _priors(text: str) -> str:
    """``auto``, ``true`` or ``false`` (any spelling ``_boolean`` takes)."""
    if str(text).strip().lower() == "auto":
        return "auto"
    return "true" if _boolean(text) else "false"


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        lowered = str(text).strip().lower()
        if lowered not in allowed:
            raise ValueError
        return lowered
    return parse


def _text(text: str) -> str:
    return str(text).strip()


def _pubsub_name(text: str) -> str:
    """A Pub/Sub topic or subscription name: 3-255 characters, a letter first, not starting with goog."""
    name = str(text).strip()
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}", name) or name.lower().startswith("goog"):
        raise ValueError
    return name


def _optional_pubsub_name(text: str) -> str:
    return _pubsub_name(text) if str(text).strip() else ""


def _project_id(text: str) -> str:
    """A Google Cloud project id: lowercase letters, digits and hyphens, a letter first (emulators accept any such)."""
    project = str(text).strip()
    if not re.fullmatch(r"[a-z][-a-z0-9]{0,62}", project):
        raise ValueError
    return project


def _scope_key(text: str) -> str:
    key = str(text).strip()
    if key and not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", key):
        raise ValueError
    return key


def _plausible_draws(text: str) -> int:
    """0 (no plausible values) or a number of draws Rubin's rules can combine."""
    value = int(str(text).strip())
    if value != 0 and not scoring_names.MIN_DRAWS <= value <= scoring_names.MAX_DRAWS:
        raise ValueError
    return value


def _column_name(text: str) -> str:
    """A column name of ``attempt`` as an SQL identifier takes it unquoted: a letter or _, then letters, digits, _
    (at most 63 characters, PostgreSQL's limit); empty means none. It is still quoted where it is used."""
    name = str(text).strip()
    if name and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ValueError
    return name


def _group_label(text: str) -> str:
    label = str(text).strip()
    if len(label) > 200:
        raise ValueError
    return label


def _rapid_guess_rule(text: str) -> str:
    return str(rapid.RapidGuessRule.parse(text))


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise ValueError
    return value


@dataclass(frozen=True)
class Spec:
    """How one setting is named, parsed and explained."""

    env: str
    default: Any
    parse: Callable[[str], Any]
    allowed: str
    help: str
    secret: bool = False


#: One source for each setting: the README's table and the CLI flags read this.
SPECS: dict[str, Spec] = {
    "model": Spec("MIRT_MODEL", "2PL", model_name, f"one of {', '.join(MODELS)} (Rasch = 1PL)",
                  "IRT model to fit"),
    "lookback_days": Spec("MIRT_LOOKBACK_DAYS", 60, _positive_int, "a whole number of days > 0",
                          "answers completed in this many days before the run are used"),
    "max_obs": Spec("MIRT_MAX_OBS", 500_000, _positive_int, "a whole number > 0",
                    "cap on responses per run; the most recent are kept"),
    "min_responses": Spec("MIRT_MIN_RESPONSES", defaults.DEFAULT_MIN_RESPONSES, _positive_int,
                          "a whole number > 0", "items with fewer responses are not estimated"),
    "linking_method": Spec("MIRT_LINKING_METHOD", linking.STOCKING_LORD, _choice(*linking.RUN_METHODS),
                           f"one of {', '.join(linking.RUN_METHODS)}", "how the new scale is linked to the anchors"),
    "min_anchors": Spec("MIRT_MIN_ANCHORS", 5, _positive_int, "a whole number > 0",
                        "fewest anchors (answered, estimated, not drifting) a run links on; fewer fails the run"),
    "drift_threshold": Spec("MIRT_DRIFT_THRESHOLD", linking.DEFAULT_DRIFT_THRESHOLD, _non_negative_float,
                            "a number >= 0", "robust z past which an anchor counts as drifted (0: no screening)"),
    "drift_runs": Spec("MIRT_DRIFT_RUNS", 2, _positive_int, "a whole number > 0",
                       "bank mode: an operational item flagged for drift in this many of its last runs (one more) is "
                       "suspended; also the runs its recent estimate averages"),
    "promotion_min_answers": Spec("MIRT_PROMOTION_MIN_ANSWERS", bank.PromotionGates.min_answers, _positive_int,
                                  "a whole number > 0", "bank mode: fewest answers in a run for a pretest item "
                                  "to be promoted"),
    "promotion_max_b_se": Spec("MIRT_PROMOTION_MAX_B_SE", bank.PromotionGates.max_b_se, _positive_float,
                               "a number > 0", "bank mode: largest standard error of b for a pretest item to be "
                               "promoted"),
    "promotion_runs": Spec("MIRT_PROMOTION_RUNS", bank.PromotionGates.runs, _positive_int, "a whole number > 0",
                           "bank mode: runs in a row that must estimate a pretest item, with steady b, before it "
                           "is promoted"),
    "item_priors": Spec("MIRT_ITEM_PRIORS", "auto", _priors, "auto, true or false",
                        "Bayes-modal priors for 2PL/3PL: log a ~ N(mu, 0.5^2), b ~ N(m, (2 / e^mu)^2) centred on "
                        "the items (3PL's c ~ Beta(5, 17) always); auto: only on thin data"),
    "response_time_column": Spec("MIRT_RESPONSE_TIME_COLUMN", "", _column_name,
                                 "a column name of attempt (letters, digits and _, not a digit first)",
                                 "attempt column with each answer's response time in ms: rapid guesses are left out "
                                 "of the run (empty: no filtering)"),
    "rapid_guess_rule": Spec("MIRT_RAPID_GUESS_RULE", rapid.DEFAULT_RULE, _rapid_guess_rule,
                             "ntP[:CAP_MS] (P% of the item's mean time, at most CAP_MS) or fixed:MS",
                             "with MIRT_RESPONSE_TIME_COLUMN: answers faster than this threshold are rapid guesses "
                             "(NT10 capped at 10 s, Wise & Ma 2012)"),
    "item_fit_threshold": Spec("MIRT_ITEM_FIT_THRESHOLD", 0.12, _positive_float, "a number > 0",
                               "items whose RMSD between observed and model curves exceeds this are flagged"),
    "scoring": Spec("MIRT_SCORING", scoring_names.EAP, scoring_names.method_name,
                    f"one of {', '.join(scoring_names.METHODS)}",
                    "how students' abilities are scored (docs/psychometrics.md, Scoring)"),
    "plausible_values": Spec("MIRT_PLAUSIBLE_VALUES", scoring_names.DEFAULT_DRAWS, _plausible_draws,
                             f"0 (none) or a whole number from {scoring_names.MIN_DRAWS} to "
                             f"{scoring_names.MAX_DRAWS}", "plausible values drawn per student for the population's "
                             "mean and SD, stored per run (never per student)"),
    "em_tolerance": Spec("MIRT_EM_TOLERANCE", defaults.DEFAULT_TOLERANCE, _positive_float, "a number > 0",
                         "EM stops when no slope or intercept moves more than this"),
    "em_max_iterations": Spec("MIRT_EM_MAX_ITERATIONS", defaults.DEFAULT_MAX_ITERATIONS, _positive_int,
                              "a whole number > 0", "EM cycles before giving up (the run says it did not converge)"),
    "standard_errors": Spec("MIRT_STANDARD_ERRORS", "exact", _choice("exact", "approximate"), "exact or approximate",
                            "how the items' standard errors are computed: exact inverts the whole observed "
                            "information whenever it fits the memory budget (the approximation only past it); "
                            "approximate always takes the approximation, within 2% of exact, several times faster"),
    "quadrature_points": Spec("MIRT_QUADRATURE_POINTS", DEFAULT_POINTS, _positive_int, "a whole number >= 5",
                              "quadrature nodes on [-6, 6]"),
    "database_url": Spec("DATABASE_URL", "", _text, "a PostgreSQL URL",
                         "database to use (any SQLAlchemy PostgreSQL URL; pg8000 is the driver)", secret=True),
    "instance_connection_name": Spec("INSTANCE_CONNECTION_NAME", "", _text, "project:region:instance",
                                     "Cloud SQL instance, reached through the Cloud SQL Python Connector"),
    "db_user": Spec("DB_USER", "", _text, "a user name", "Cloud SQL database user"),
    "db_name": Spec("DB_NAME", "", _text, "a database name", "Cloud SQL database"),
    "db_pass": Spec("DB_PASS", "", _text, "a password", "Cloud SQL password (leave empty with DB_IAM_AUTH)",
                    secret=True),
    "db_iam_auth": Spec("DB_IAM_AUTH", False, _boolean, "true or false", "Cloud SQL IAM database authentication"),
    "db_ip_type": Spec("DB_IP_TYPE", "public", _choice("public", "private", "psc"), "public, private or psc",
                       "which Cloud SQL IP the connector uses"),
    "data_dir": Spec("MIRT_DATA_DIR", "", _text, "a directory",
                     "where the embedded PostgreSQL keeps its data when no database is configured"),
    "log_level": Spec("LOG_LEVEL", "INFO", _choice("debug", "info", "warning", "error"),
                      "debug, info, warning or error", "least severe log lines shown"),
    "log_format": Spec("LOG_FORMAT", "auto", _choice("auto", "json", "text"), "auto, json or text",
                       "json: one JSON object per line (Cloud Logging); text: plain lines; auto: text on a terminal"),
    "project": Spec("GOOGLE_CLOUD_PROJECT", "", _project_id, "a Google Cloud project id (lowercase letters, digits, hyphens)",
                    "project of the Pub/Sub topics and subscription"),
    "requests_topic": Spec("MIRT_REQUESTS_TOPIC", "calibration-requested", _pubsub_name, "a Pub/Sub topic name",
                           "topic calibration requests are published to (by `publish` and the scheduler)"),
    "requests_subscription": Spec("MIRT_REQUESTS_SUBSCRIPTION", "calibration-requested-consumer", _pubsub_name,
                                  "a Pub/Sub subscription name", "subscription the consumer pulls requests from"),
    "completed_topic": Spec("MIRT_COMPLETED_TOPIC", "calibration-completed", _pubsub_name, "a Pub/Sub topic name",
                            "topic calibration-completed events are published to"),
    "dead_letter_topic": Spec("MIRT_DEAD_LETTER_TOPIC", "", _optional_pubsub_name, "a Pub/Sub topic name",
                              "where malformed requests are forwarded (empty: not forwarded, only recorded)"),
    "health_port": Spec("PORT", 8080, _port, "a TCP port (1-65535)", "port of the /healthz and /readyz endpoints"),
    "shutdown_grace_seconds": Spec("MIRT_SHUTDOWN_GRACE_SECONDS", 25, _positive_int, "a whole number of seconds > 0",
                                   "on SIGTERM, how long a run in flight may finish before it is abandoned"),
    "scope_key": Spec("MIRT_SCOPE_KEY", "", _scope_key, "a key of question.meta (letters, digits, _ or -)",
                      "question.meta key whose values are the scopes, one scale each (empty: the whole bank is one)"),
    "dif_group_column": Spec("MIRT_DIF_GROUP_COLUMN", "", _column_name,
                             "a column name of attempt (a letter or _, then letters, digits or _; empty: no DIF)",
                             "column of attempt holding each answer's group label (device, locale, cohort); when set, "
                             "every run screens its items for DIF between the groups"),
    "dif_reference_group": Spec("MIRT_DIF_REFERENCE_GROUP", "", _group_label, "a group label (empty: the largest)",
                                "the DIF screen's reference group, which every other group is compared with"),
    "max_lease_seconds": Spec("MIRT_MAX_LEASE_SECONDS", 7200, _positive_int, "a whole number of seconds > 0",
                              "how long the consumer keeps extending a request's lease while its run goes on"),
}


@dataclass(frozen=True)
class Settings:
    model: str
    lookback_days: int
    max_obs: int
    min_responses: int
    linking_method: str
    min_anchors: int
    drift_threshold: float
    drift_runs: int
    promotion_min_answers: int
    promotion_max_b_se: float
    promotion_runs: int
    item_priors: str
    response_time_column: str
    rapid_guess_rule: str
    item_fit_threshold: float
    scoring: str
    plausible_values: int
    em_tolerance: float
    em_max_iterations: int
    standard_errors: str
    quadrature_points: int
    database_url: str
    instance_connection_name: str
    db_user: str
    db_name: str
    db_pass: str
    db_iam_auth: bool
    db_ip_type: str
    data_dir: str
    log_level: str
    log_format: str
    project: str
    requests_topic: str
    requests_subscription: str
    completed_topic: str
    dead_letter_topic: str
    health_port: int
    shutdown_grace_seconds: int
    scope_key: str
    dif_group_column: str
    dif_reference_group: str
    max_lease_seconds: int

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Settings from ``environ`` (default: the process environment), then ``overrides``.

        Overrides that are None are ignored, so unset command-line flags keep
        the environment's value.
        """
        environ = os.environ if environ is None else environ
        values = {}
        for name, spec in SPECS.items():
            raw = environ.get(spec.env)
            values[name] = spec.default if raw is None or raw == "" else parse_setting(name, raw, source=spec.env)
        settings = cls(**values)
        return settings.with_overrides(**overrides)

    def with_overrides(self, origin: str = "flag", **overrides: Any) -> "Settings":
        """A copy with the given settings replaced, each checked like its variable.

        ``origin`` names where the overrides came from in error messages:
        "flag" (``--max-obs``) or "request" (``overrides.max_obs``).
        """
        changed = {}
        for name, value in overrides.items():
            if value is None:
                continue
            if name not in SPECS:
                raise ConfigError(f"unknown setting {name!r}", f"known settings: {', '.join(SPECS)}")
            label = f"--{name.replace('_', '-')}" if origin == "flag" else f"{origin} override {name}"
            changed[name] = parse_setting(name, value, source=label)
        candidate = replace(self, **changed)
        candidate._check()
        return candidate

    def _check(self) -> None:
        if self.min_anchors < linking.MIN_ANCHORS:
            raise ConfigError(f"MIRT_MIN_ANCHORS must be at least {linking.MIN_ANCHORS}, got {self.min_anchors}")
        if self.quadrature_points < 5:
            raise ConfigError(f"MIRT_QUADRATURE_POINTS must be at least 5, got {self.quadrature_points}")
        if self.dif_reference_group and not self.dif_group_column:
            raise ConfigError("MIRT_DIF_REFERENCE_GROUP is set but MIRT_DIF_GROUP_COLUMN is not",
                              "set MIRT_DIF_GROUP_COLUMN to the column of attempt holding the group labels, or "
                              "leave MIRT_DIF_REFERENCE_GROUP empty")
        if self.instance_connection_name and self.instance_connection_name.count(":") != 2:
            raise ConfigError(f"INSTANCE_CONNECTION_NAME must read project:region:instance, "
                              f"got {self.instance_connection_name!r}")
        if self.instance_connection_name and not (self.db_user and self.db_name):
            raise ConfigError("INSTANCE_CONNECTION_NAME is set but DB_USER or DB_NAME is not",
                              "set both, and DB_PASS or DB_IAM_AUTH=true")
        if self.instance_connection_name and not (self.db_pass or self.db_iam_auth):
            raise ConfigError("Cloud SQL needs a password or IAM authentication",
                              "set DB_PASS, or DB_IAM_AUTH=true for IAM database authentication")

    @property
    def embedded_data_dir(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        import platformdirs
        return Path(platformdirs.user_data_dir(APP_NAME))

    def public(self) -> dict[str, Any]:
        """The settings that shape a run, safe to log and to store (no secrets, no URLs)."""
        shown = (CALIBRATION_SETTINGS + (DIF_SETTINGS if self.dif_group_column else ())
                 + (RAPID_GUESS_SETTINGS if self.response_time_column else ())
                 + (APPROXIMATE_SETTINGS if self.standard_errors != "exact" else ()))
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in shown}

    def require_project(self) -> str:
        if not self.project:
            raise ConfigError("GOOGLE_CLOUD_PROJECT is not set",
                              "set it to the project of the Pub/Sub topics (any id works with PUBSUB_EMULATOR_HOST)")
        return self.project

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line."""
        found = [self.db_pass] if self.db_pass else []
        if self.database_url:
            try:
                from sqlalchemy.engine import make_url
                password = make_url(self.database_url).password
            except Exception:
                found.append(self.database_url)  # unparsed: it may hold a password anywhere
            else:
                if password:  # a URL without one names the database and may be shown
                    found += [self.database_url, str(password)]
        return [value for value in found if len(value) >= 3]

    def database_source(self) -> str:
        """Where the database comes from, without credentials."""
        if self.database_url:
            return "DATABASE_URL"
        if self.instance_connection_name:
            return f"Cloud SQL {self.instance_connection_name}"
        return "embedded PostgreSQL"


#: The settings that shape the numbers (logged at the start of a run and stored with it).
CALIBRATION_SETTINGS = ("model", "lookback_days", "max_obs", "min_responses", "linking_method", "min_anchors",
                        "drift_threshold", "item_priors", "item_fit_threshold", "scoring", "plausible_values",
                        "em_tolerance", "em_max_iterations", "quadrature_points")
#: Shown with them only when DIF is on (MIRT_DIF_GROUP_COLUMN set): without it a run's record is as before.
DIF_SETTINGS = ("dif_group_column", "dif_reference_group")
#: Likewise only when rapid-guess filtering is on (MIRT_RESPONSE_TIME_COLUMN set).
RAPID_GUESS_SETTINGS = ("response_time_column", "rapid_guess_rule")
#: Likewise only when it is not the default (exact).
APPROXIMATE_SETTINGS = ("standard_errors",)


def parse_setting(name: str, raw: Any, *, source: str) -> Any:
    """``raw`` parsed and checked as setting ``name``; a ``ConfigError`` naming ``source`` otherwise."""
    spec = SPECS[name]
    try:
        if isinstance(raw, bool) and spec.parse is not _boolean:
            raise ValueError
        return spec.parse(str(raw))
    except (ValueError, TypeError):
        shown = "<hidden>" if spec.secret else repr(raw)
        raise ConfigError(f"{source} must be {spec.allowed}, got {shown}") from None
