"""The kernel's pytest plugin: asyncio mode set, fixtures provided, a forgotten required kit fixture fails."""

from __future__ import annotations

pytest_plugins = ["pytester"]


def test_a_forgotten_exchange_fixture_fails_with_a_message_and_async_tests_run(pytester) -> None:
    pytester.makepyfile(test_kit="""
        from arbframe.testing.exchange_kit import ExchangeContract

        class TestForgot(ExchangeContract):
            pass

        async def test_async_runs_without_configuration(plugin_harness):
            assert plugin_harness().context.mode == "paper"
    """)
    result = pytester.runpytest("-k", "identity or async_runs", "-p", "no:cacheprovider")  # autoloaded (pytest11)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*TestForgot must override the `exchange` fixture*"])


def test_service_harness_builds_the_run_kernel_with_its_data_under_tmp_path(pytester) -> None:
    pytester.makepyfile(test_service="""
        import csv

        def test_one_tick(service_harness, tmp_path):
            harness = service_harness({"arbitrage": {"symbols": ["BTC"]}}, env={}, mock=True)
            assert harness.context.data_dir == tmp_path / "data"
            assert harness.pm.get_plugins()  # the installed plugin modules are registered
            assert harness.run(1) == 0
            with (tmp_path / "data" / "spreads.csv").open(newline="") as fh:
                rows = list(csv.DictReader(fh))
            assert sorted(r["direction"] for r in rows) == ["kimchi", "reverse"]  # one tick: both directions
    """)
    # a process of its own: the run imports kernel modules that an in-process run would drop again afterwards
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
