"""Where and how the run executes: the process's place in a torchrun job."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a torchrun job (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0
