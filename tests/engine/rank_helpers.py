"""What torchrun gives each of two processes on one machine, for tests that start the ranks themselves."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_variables(rank: int, port: int) -> dict[str, str]:
    """The environment torchrun sets for `rank` of 2 (one thread each, as torchrun's default)."""
    return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": "2",
            "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
