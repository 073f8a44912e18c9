"""The learner's bind address: loopback by default; reachable from other machines only with
CURVE, or with an explicit `transport.insecure: true`, which starts with a warning."""

from __future__ import annotations

import logging

import pytest

from daydream.cli import main
from daydream.config import load_config
from daydream.runtime.learner import Learner
from daydream.transport.endpoints import check_bind_security, is_loopback
from processes import free_port_pair


def test_loopback_addresses():
    for bind in ("tcp://127.0.0.1:5555", "tcp://localhost:5555", "tcp://[::1]:5555", "tcp://127.0.0.2:5555",
                 "tcp://lo:5555"):
        assert is_loopback(bind), bind
    for bind in ("tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://[::]:5555", "tcp://192.168.1.10:5555",
                 "tcp://eth0:5555", "tcp://workstation:5555"):
        assert not is_loopback(bind), bind


def test_default_bind_is_loopback():
    assert is_loopback(load_config("pendulum_tiny").transport.bind)
    assert not load_config("pendulum_tiny").transport.insecure


def test_open_bind_without_curve_is_refused_unless_insecure(caplog):
    with pytest.raises(ValueError, match="insecure=true") as err:
        check_bind_security("tcp://*:5555", curve=False, insecure=False)
    assert "daydream keys" in str(err.value) and "curve.enabled=true" in str(err.value)
    with caplog.at_level(logging.WARNING):
        check_bind_security("tcp://127.0.0.1:5555", curve=False, insecure=False)
        check_bind_security("tcp://*:5555", curve=True, insecure=False)
        assert not caplog.records  # loopback, or CURVE: nothing to warn about
        check_bind_security("tcp://0.0.0.0:5555", curve=False, insecure=True)
    assert len(caplog.records) == 1 and "INSECURE" in caplog.records[0].getMessage()


def test_learner_command_refuses_an_open_bind_and_creates_nothing(tmp_path, capsys):
    port = free_port_pair()
    code = main(["learner", "--config", "pendulum_tiny", "--set", f"logdir={tmp_path / 'run'}",
                 "--set", f"transport.bind=tcp://*:{port}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "transport.insecure=true" in err and "CURVE" in err
    assert not (tmp_path / "run").exists()


def test_insecure_learner_starts_on_all_interfaces_with_a_warning(tmp_path, caplog):
    port = free_port_pair()
    config = load_config("pendulum_tiny", [f"logdir={tmp_path / 'run'}", f"transport.bind=tcp://0.0.0.0:{port}",
                                           "transport.insecure=true", "threads=1"])
    with caplog.at_level(logging.WARNING):
        learner = Learner(config)
    try:
        assert any("INSECURE" in r.getMessage() for r in caplog.records)
        learner.link.start()  # it really listens there
        assert learner.link.error is None
    finally:
        learner.close()
