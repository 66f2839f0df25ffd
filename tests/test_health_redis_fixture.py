"""The throwaway redis-server fixture: free port (never 6379), no persistence, stop/start, skip or fail."""

from __future__ import annotations

import pytest

from arbframe.testing.redis_server import RedisServer, find_redis_server, redis_server, require_redis_server  # noqa: F401


def test_missing_binary_skips_with_a_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_SERVER", str(tmp_path / "no-such-redis-server"))
    monkeypatch.delenv("CI", raising=False)
    assert find_redis_server() is None
    with pytest.raises(pytest.skip.Exception, match="redis-server binary not found"):
        require_redis_server()


def test_missing_binary_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_SERVER", str(tmp_path / "no-such-redis-server"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_redis_server()


def test_refuses_the_system_port():
    if find_redis_server() is None:
        pytest.skip("redis-server binary not found")
    with pytest.raises(ValueError, match="6379"):
        RedisServer(port=6379)


@pytest.mark.redis
def test_fresh_server_without_persistence_survives_stop_start(redis_server):  # noqa: F811
    assert redis_server.port != 6379 and redis_server.running
    assert redis_server.cli("CONFIG", "GET", "save").split() == ["save"]
    assert redis_server.cli("CONFIG", "GET", "appendonly").split() == ["appendonly", "no"]
    assert str(redis_server.workdir) in redis_server.cli("CONFIG", "GET", "dir")
    redis_server.cli("SET", "k", "v")
    port = redis_server.port
    redis_server.stop()
    assert not redis_server.running
    redis_server.start()
    assert redis_server.port == port and redis_server.cli("GET", "k") == ""  # back, empty
