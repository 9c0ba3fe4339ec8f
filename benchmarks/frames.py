"""The log frames the fan-out figures publish: 50 lines each, as the stream's `log` frames.

`text` lines look like the workflow's own output (compressible, as real logs are); `noise`
lines are base64 of random bytes, which per-message deflate cannot shrink, so a client that
stops reading really fills its socket buffers. A pool of distinct line sets is built up front
so that producing a frame costs only the JSON encoding the service itself does per publish,
and the pool is large enough that deflate's 32 KB window never sees a repeated frame.
"""

from __future__ import annotations

import base64
import os
import random
from datetime import UTC, datetime
from typing import Any

LINES_PER_FRAME = 50
POOL_SIZE = 64
NOISE_BYTES = 72  # random bytes per noise line: 96 characters of base64, a typical line
END_INDEX = -1

Line = dict[str, str]


def _text_line(rng: random.Random, batch: int, step: int) -> str:
    kind = rng.choice(("GENERATE", "ANALYZE"))
    if kind == "GENERATE":
        return (
            f"batch {batch}: wrote {step * 25} of 100 rows to batch_{batch}.csv "
            f"(seed r{rng.getrandbits(44):011x}:{batch})"
        )
    return (
        f"batch {batch}: count=100 mean={rng.uniform(50, 150):.4f} "
        f"stdev={rng.uniform(5, 25):.4f} p95={rng.uniform(80, 190):.4f}"
    )


def line_pool(payload: str, seed: int = 8) -> list[list[Line]]:
    """`POOL_SIZE` distinct sets of `LINES_PER_FRAME` log lines of kind `payload`."""
    if payload not in ("text", "noise"):
        raise ValueError(f"unknown payload {payload!r}")
    rng = random.Random(seed)
    stamp = datetime.now(UTC).isoformat()
    pool = []
    for _ in range(POOL_SIZE):
        lines = []
        for number in range(LINES_PER_FRAME):
            batch = rng.randint(1, 12)
            if payload == "noise":
                message = base64.b64encode(os.urandom(NOISE_BYTES)).decode()
            else:
                message = _text_line(rng, batch, number % 4 + 1)
            source = f"{'GENERATE' if number % 2 else 'ANALYZE'} ({batch})"
            lines.append({"timestamp": stamp, "source": source, "message": message})
        pool.append(lines)
    return pool


def frame_data(pool: list[list[Line]], index: int, sent: float) -> dict[str, Any]:
    """A frame's `data`: the send time first (so clients find it in the first bytes)."""
    if index == END_INDEX:
        return {"sent": sent, "index": END_INDEX, "lines": []}
    return {"sent": sent, "index": index, "lines": pool[index % len(pool)]}
