"""No line of Python in src/, tests/, benchmarks/ or scripts/ is longer than 120 characters: longer ones are read
side-scrolled or wrapped by the editor, and hide the end of a condition or of an error message."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("src", "tests", "benchmarks", "scripts")
MAX_CHARACTERS = 120


def test_no_line_of_python_is_longer_than_120_characters():
    long = [
        f"{path.relative_to(ROOT)}:{number} ({len(line)} characters)"
        for folder in FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if len(line) > MAX_CHARACTERS
    ]
    assert not long, "wrap these: " + "; ".join(long)
