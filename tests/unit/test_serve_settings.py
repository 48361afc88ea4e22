"""The serving environment: defaults, given values, and malformed values named in the error."""

import pytest

from serve.settings import ServeSettings


def test_defaults():
    settings = ServeSettings.from_env({})
    assert (settings.port, settings.timeout_seconds, settings.max_payload_mb) == (8080, 60, 6)
    assert settings.workers == settings.cpus
    assert settings.client_timeout_seconds == 30


def test_response_limits_default_to_sagemakers_and_follow_the_response_size():
    """6 MB: InvokeEndpoint's response limit; batch transform, which has none documented: 100 MB. Rows: as
    many as the smallest answer (4 bytes, "0.0\n") fits."""
    realtime, batch = ServeSettings.from_env({}), ServeSettings.from_env({"SAGEMAKER_BATCH": "True"})
    assert realtime.limits.max_response_bytes == 6291456 and realtime.limits.max_rows == 6291456 // 4
    assert batch.limits.max_response_bytes == 100 * 2**20 and batch.limits.max_rows == 100 * 2**20 // 4
    given = ServeSettings.from_env({"FMWALS_MAX_RESPONSE_IN_MB": "20", "FMWALS_MAX_ROWS_PER_REQUEST": "500"})
    assert given.limits.max_response_bytes == 20 * 2**20 and given.limits.max_rows == 500


def test_given_values():
    settings = ServeSettings.from_env({"SAGEMAKER_BIND_TO_PORT": "9090", "SAGEMAKER_MODEL_SERVER_TIMEOUT": " 0 ",
                                       "SAGEMAKER_MODEL_SERVER_WORKERS": "3"})
    assert (settings.port, settings.timeout_seconds, settings.workers) == (9090, 0, 3)


@pytest.mark.parametrize("name,value,message", [
    ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "sixty", "SAGEMAKER_MODEL_SERVER_TIMEOUT must be an integer, got 'sixty'"),
    ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "-1", "SAGEMAKER_MODEL_SERVER_TIMEOUT must be between 0 and 86400, got -1"),
    ("SAGEMAKER_BIND_TO_PORT", "80a", "SAGEMAKER_BIND_TO_PORT must be an integer, got '80a'"),
    ("SAGEMAKER_BIND_TO_PORT", "70000", "SAGEMAKER_BIND_TO_PORT must be between 1 and 65535, got 70000"),
    ("SAGEMAKER_MODEL_SERVER_WORKERS", "two", "SAGEMAKER_MODEL_SERVER_WORKERS must be an integer, got 'two'"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "101", "SAGEMAKER_MAX_PAYLOAD_IN_MB must be between 1 and 100, got 101"),
    ("FMWALS_MAX_RESPONSE_IN_MB", "0", "FMWALS_MAX_RESPONSE_IN_MB must be between 1 and 1024, got 0"),
    ("FMWALS_MAX_ROWS_PER_REQUEST", "many", "FMWALS_MAX_ROWS_PER_REQUEST must be an integer, got 'many'"),
    ("FMWALS_CLIENT_TIMEOUT", "0", "FMWALS_CLIENT_TIMEOUT must be between 1 and 3600, got 0"),
])
def test_malformed_values_name_the_variable(name, value, message):
    with pytest.raises(ValueError) as caught:
        ServeSettings.from_env({name: value})
    assert str(caught.value) == message
