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
