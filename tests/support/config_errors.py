"""What every refusal of a bad value must say: key, value, origin, what is allowed."""

from tasks.errors import BAD_INPUT, ConfigError


def assert_names_everything(err, key, value, origin_words):
    message = str(err)
    assert err.code == BAD_INPUT == 2
    assert isinstance(err, ConfigError)
    assert err.key == key and message.startswith(f"error: {key}=")
    assert repr(value) in message, message
    for word in origin_words:
        assert word in message, message
    assert "allowed" in message or "must be set" in message, message
    assert "\n" not in message, "one line"
