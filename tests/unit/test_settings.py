"""Every setting's bad value stops with one clear error naming the variable, the value and what is allowed."""

import pytest

from consumer.errors import ConfigError
from consumer.settings import SPECS, Settings

# One bad value per setting with a constrained domain.
BAD_VALUES = {
    "MIRT_MODEL": "4PL",
    "MIRT_LOOKBACK_DAYS": "-3",
    "MIRT_MAX_OBS": "lots",
    "MIRT_MIN_RESPONSES": "0",
    "MIRT_LINKING_METHOD": "equipercentile",
    "MIRT_MIN_ANCHORS": "1",
    "MIRT_DRIFT_THRESHOLD": "-1",
    "MIRT_DRIFT_RUNS": "0",
    "MIRT_PROMOTION_MIN_ANSWERS": "many",
    "MIRT_PROMOTION_MAX_B_SE": "0",
    "MIRT_PROMOTION_RUNS": "-2",
    "MIRT_ITEM_PRIORS": "perhaps",
    "MIRT_RESPONSE_TIME_COLUMN": "time_spent_ms; DROP TABLE attempt",
    "MIRT_RAPID_GUESS_RULE": "nt200",
    "MIRT_ITEM_FIT_THRESHOLD": "0",
    "MIRT_SCORING": "bayes",
    "MIRT_PLAUSIBLE_VALUES": "1",
    "MIRT_EM_TOLERANCE": "inf",
    "MIRT_EM_MAX_ITERATIONS": "1.5",
    "MIRT_STANDARD_ERRORS": "fast",
    "MIRT_QUADRATURE_POINTS": "3",
    "DB_IAM_AUTH": "sometimes",
    "DB_IP_TYPE": "ipv6",
    "LOG_LEVEL": "verbose",
    "LOG_FORMAT": "xml",
    "GOOGLE_CLOUD_PROJECT": "My Project!",
    "MIRT_REQUESTS_TOPIC": "goog-reserved",
    "MIRT_REQUESTS_SUBSCRIPTION": "1starts-with-a-digit",
    "MIRT_COMPLETED_TOPIC": "has spaces",
    "MIRT_DEAD_LETTER_TOPIC": "x",
    "PORT": "70000",
    "MIRT_SHUTDOWN_GRACE_SECONDS": "-5",
    "MIRT_MAX_LEASE_SECONDS": "forever",
    "MIRT_SCOPE_KEY": "subject = 'math'",
    "INSTANCE_CONNECTION_NAME": "just-a-name",
    "MIRT_DIF_GROUP_COLUMN": "device; DROP TABLE attempt",
    "MIRT_DIF_REFERENCE_GROUP": "x" * 201,
}
# Free text, checked where it is used (DATABASE_URL by the engine factory, with its own tests).
ANY_TEXT = {"DATABASE_URL", "DB_USER", "DB_NAME", "DB_PASS", "MIRT_DATA_DIR"}


def test_every_setting_is_covered_here():
    assert set(BAD_VALUES) | ANY_TEXT == {spec.env for spec in SPECS.values()}


@pytest.mark.parametrize("variable, value", sorted(BAD_VALUES.items()))
def test_a_bad_value_is_a_clear_error(variable, value):
    environ = {variable: value}
    if variable == "INSTANCE_CONNECTION_NAME":
        environ.update(DB_USER="u", DB_NAME="d", DB_PASS="p")
    with pytest.raises(ConfigError) as problem:
        Settings.load(environ)
    message = str(problem.value)
    assert variable in message and "\n" not in message
    if variable != "DB_PASS":
        assert repr(value) in message or value in message


def test_defaults_load_and_are_valid():
    settings = Settings.load({})
    for name, spec in SPECS.items():
        assert getattr(settings, name) == spec.default or name == "model"


def test_secrets_are_not_echoed_back():
    with pytest.raises(ConfigError) as problem:
        Settings.load({"DB_IAM_AUTH": "maybe", "DB_PASS": "hunter2"})
    assert "hunter2" not in str(problem.value)


def test_the_scoring_method_is_read_in_any_case_and_kept_by_its_canonical_name():
    assert Settings.load({"MIRT_SCORING": "wle"}).scoring == "WLE"
    assert Settings.load({"MIRT_SCORING": "eapsum"}).scoring == "EAP-sum"
    assert Settings.load({}).scoring == "EAP" and Settings.load({}).plausible_values == 5
    assert Settings.load({"MIRT_PLAUSIBLE_VALUES": "0"}).plausible_values == 0
    with pytest.raises(ConfigError, match="request override scoring"):
        Settings.load({}).with_overrides("request", scoring="median")
@pytest.mark.parametrize("column", ["device; DROP TABLE attempt", 'lo"cale', "1st", "device name"])
def test_the_dif_group_column_must_be_a_plain_identifier(column):
    with pytest.raises(ConfigError, match="MIRT_DIF_GROUP_COLUMN must be a column name of attempt"):
        Settings.load({"MIRT_DIF_GROUP_COLUMN": column})


def test_the_dif_settings_show_in_a_runs_settings_only_when_dif_is_on():
    assert "dif_group_column" not in Settings.load({}).public()
    on = Settings.load({"MIRT_DIF_GROUP_COLUMN": "device", "MIRT_DIF_REFERENCE_GROUP": "desktop"}).public()
    assert (on["dif_group_column"], on["dif_reference_group"]) == ("device", "desktop")


def test_a_dif_reference_group_without_a_group_column_is_an_error():
    with pytest.raises(ConfigError, match="MIRT_DIF_REFERENCE_GROUP is set but MIRT_DIF_GROUP_COLUMN is not"):
        Settings.load({"MIRT_DIF_REFERENCE_GROUP": "desktop"})
