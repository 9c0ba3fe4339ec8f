"""The retry delay: exponential from `base`, capped, with at most 20 % jitter downwards."""

from __future__ import annotations

from nextflow_k8s_service.utils.backoff import Backoff


def test_backoff_is_capped_and_exponential() -> None:
    backoff = Backoff(base=1.0, cap=8.0)
    assert 0.8 <= backoff.delay(1) <= 1.0
    assert 1.6 <= backoff.delay(2) <= 2.0
    assert 3.2 <= backoff.delay(3) <= 4.0
    assert 6.4 <= backoff.delay(10) <= 8.0


def test_backoff_before_any_failure_is_the_base_delay() -> None:
    assert 0.4 <= Backoff(base=0.5, cap=30.0).delay(0) <= 0.5
