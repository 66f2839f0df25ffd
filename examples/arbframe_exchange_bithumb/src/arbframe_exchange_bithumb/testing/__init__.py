"""Test helpers of arbframe_exchange_bithumb: a fake exchange server on 127.0.0.1.

In the source tree only, not in the wheel: the tests and benchmarks run from a checkout (editable install)."""
