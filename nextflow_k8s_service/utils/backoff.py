"""The one retry delay of the package: capped exponential backoff with a little jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays (seconds) for retry loops: `base`, doubling per consecutive failure, at most `cap`.

    The jitter (the delay is drawn from 80-100 % of the nominal one) keeps the retries of many
    loops that failed together (an API server restart) from arriving together.
    """

    base: float = 0.5
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        """The delay after the `failures`-th consecutive failure (1 for the first)."""
        raw = min(self.cap, self.base * 2.0 ** max(0, failures - 1))
        return raw * random.uniform(0.8, 1.0)
