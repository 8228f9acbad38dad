"""Temporary files: as a killed writer of ours really leaves them (a process that dies inside `atomic_path`), and a
user's that only look like them."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Iterator

_WRITE_AND_DIE = """
import contextlib, os, sys
from napari_lgg_unet.engine.atomic import atomic_path
with contextlib.ExitStack() as stack:
    for target, suffix in zip(sys.argv[1::2], sys.argv[2::2]):
        stack.enter_context(atomic_path(target, suffix=suffix)).write_text("half")
    os._exit(9)  # killed mid-write: no clean-up runs
"""

_WRITE_WHEN_TOLD = """
import sys
from napari_lgg_unet.engine.atomic import atomic_path
with atomic_path(sys.argv[1], suffix=sys.argv[2]) as temporary, open(temporary, "w") as file:
    file.write("half")  # as our writers do: one open of the temporary file, written through, then closed
    file.flush()
    print(temporary, flush=True)
    sys.stdin.readline()  # the test's go-ahead
    file.write(" and the rest")
"""

# hidden, with ".tmp" in them, some named after a target: a person's or another program's, never this version's
LOOKALIKES = (".notes.tmp", ".page.tmpl", ".mask.tif.tmp", ".mask.tif.x1.tmp", ".mask.tif.abcd1234.tmp.nii.gz",
              ".mask.tif.swp.tmp~")


def leftovers_of_a_killed_writer(*targets: tuple[Path, str]) -> list[Path]:
    """The temporary file each (target, suffix) write left behind when its process was killed, in order."""
    folders = {target.parent for target, _ in targets}
    before = {p for folder in folders if folder.is_dir() for p in folder.iterdir()}
    args = [str(part) for target, suffix in targets for part in (target, suffix)]
    assert subprocess.run([sys.executable, "-c", _WRITE_AND_DIE, *args]).returncode == 9
    left = {p for folder in folders for p in folder.iterdir()} - before
    assert len(left) == len(targets)
    # a temporary name holds a long target's name cut short
    return [next(p for p in left if p.parent == target.parent and p.name.startswith(f".{target.name}."[:100]))
            for target, _ in targets]


@contextlib.contextmanager
def a_live_writer(target: Path, suffix: str = "") -> Iterator[Path]:
    """Another process half-way through writing `target`: yields its temporary file, and lets it finish (and checks
    that it saved "half and the rest") when the block ends."""
    writer = subprocess.Popen([sys.executable, "-c", _WRITE_WHEN_TOLD, str(target), suffix], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        temporary = Path(writer.stdout.readline().strip())
        assert temporary.name.startswith(f".{target.name}."), writer.stderr.read()
        yield temporary
    finally:
        _, errors = writer.communicate("go on\n", timeout=60)
    assert writer.returncode == 0, errors
    assert target.read_text() == "half and the rest"
