"""What the converter and the quantizer share: their progress callback."""

from __future__ import annotations

from collections.abc import Callable

# (bytes done, bytes total, what is being worked on)
ProgressFn = Callable[[int, int, str], None]
