"""SCALE, STOP_FIRST, VOLUMES, PROCFILE and the worker timeouts: bad values are exit 2."""

import pytest

from tasks.configuration.process_values import check_procfile, check_scale, check_volumes
from tasks.configuration.settings import load_settings
from tasks.configuration.values import Invalid
from tasks.errors import BAD_INPUT, ConfigError


def test_scale_is_type_count_pairs():
    assert check_scale("worker=2 clock=1") == (("worker", 2), ("clock", 1))
    assert check_scale("") == ()
    assert check_scale("worker=0") == (("worker", 0),)


@pytest.mark.parametrize("value", ["worker=x", "worker=-1", "worker", "=2", "worker=2 worker=3",
                                   "web=2", "w%rker=1", "worker=1000"])
def test_bad_scale_is_refused(value):
    with pytest.raises(Invalid):
        check_scale(value)


@pytest.mark.parametrize("key, value", [("SCALE", "worker=x"), ("SCALE", "worker=-1"),
                                        ("WORKER_STOP_TIMEOUT", "ten"),
                                        ("WORKER_READY_SECONDS", "-1"),
                                        ("VOLUMES", "data"), ("PROCFILE", "../Procfile"),
                                        ("STOP_FIRST", "clock;id")])
def test_bad_values_name_the_key_and_the_value(tmp_path, key, value):
    env = tmp_path / ".env"
    env.write_text(f"{key}={value}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(env_file=str(env), environ={}, require_repo=False)
    assert err.value.code == BAD_INPUT and err.value.key == key
    assert value in err.value.message


def test_volumes_are_paths_or_names():
    assert check_volumes("data:/data /srv/a:/a:ro") == ("data:/data", "/srv/a:/a:ro")
    for bad in ("data:/", "data:rel", "a b:/x", "$(id):/x", "data:/x:rx"):
        with pytest.raises(Invalid):
            check_volumes(bad)


def test_procfile_none_turns_it_off():
    assert check_procfile("none") == ""
    assert check_procfile("config/Procfile") == "config/Procfile"
