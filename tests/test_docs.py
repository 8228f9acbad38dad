"""The docs describe this checkout, as a fresh clone shows it: every relative link reaches its file and heading, every
path they name exists, every flag of an `lgg-unet` command in a code block is one that command takes, and
docs/architecture.md's map names every module. A renamed flag, file or module, or a reworded heading, otherwise
leaves the docs pointing at nothing, and nothing else notices."""

import argparse
import re
from pathlib import Path

from napari_lgg_unet.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_lgg_unet"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), PACKAGE / "samples" / "README.md"]
FENCED = re.compile(r"```[^\n]*\n(.*?)```", re.S)
COMMAND = re.compile(r"(?:lgg-unet|-m napari_lgg_unet)\s+(train|predict|evaluate|calibrate|view)\b(.*)")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
REPO_PATH = re.compile(r"(?<![\w./-])(?:benchmarks|scripts|src|tests|docs)/[\w./*-]+")


def _prose(text: str) -> str:
    """The text without code blocks and inline code, where `](...)` is not a link."""
    return re.sub(r"`[^`]*`", "", FENCED.sub("", text))


def _anchors(doc: Path) -> set[str]:
    """The #anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens, a
    repeated heading numbered -1, -2, ..."""
    anchors: set[str] = set()
    for heading in re.findall(r"(?m)^#{1,6}\s+(.+?)\s*#*$", FENCED.sub("", doc.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, number = slug, 0
        while anchor in anchors:
            number += 1
            anchor = f"{slug}-{number}"
        anchors.add(anchor)
    return anchors


def _broken_link(doc: Path, target: str) -> str | None:
    path, _, anchor = target.partition("#")
    linked = (doc.parent / path) if path else doc
    if not linked.exists():
        return f"{doc.relative_to(ROOT)}: {target} (no such file)"
    if anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
        return f"{doc.relative_to(ROOT)}: {target} (no such heading)"
    return None


def test_every_relative_link_in_the_docs_reaches_a_file_and_heading():
    links = [(doc, target) for doc in DOCS
             for target in re.findall(r"\]\(([^)\s]+)\)", _prose(doc.read_text(encoding="utf-8")))
             if not re.match(r"[a-z]+:", target)]
    broken = [problem for doc, target in links if (problem := _broken_link(doc, target))]
    assert links
    assert not broken, "fix these links: " + "; ".join(broken)


def test_every_repository_path_the_docs_name_exists():
    named = {(doc, path.rstrip(".,:;")) for doc in DOCS for path in REPO_PATH.findall(doc.read_text(encoding="utf-8"))}
    missing = sorted(f"{doc.relative_to(ROOT)}: {path}" for doc, path in named if not any(ROOT.glob(path)))
    assert named
    assert not missing, "these paths are not in the repository: " + "; ".join(missing)


def _commands(doc: Path) -> list[tuple[str, str]]:
    """(subcommand, rest of the line) of each `lgg-unet` command in the doc's code blocks, continued lines joined
    and comments dropped."""
    blocks = FENCED.findall(doc.read_text(encoding="utf-8"))
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [(found[1], re.split(r"\s#", found[2])[0]) for line in lines if (found := COMMAND.search(line))]


def test_every_flag_of_an_lgg_unet_command_in_the_docs_exists():
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    known = {name: {flag for action in sub._actions for flag in action.option_strings}
             for name, sub in commands.items()}
    used = [(doc, sub, flag) for doc in DOCS for sub, rest in _commands(doc) for flag in FLAG.findall(rest)]
    unknown = sorted({f"{doc.relative_to(ROOT)}: lgg-unet {sub} {flag}" for doc, sub, flag in used
                      if flag not in known[sub]})
    assert used
    assert not unknown, "no such flag: " + "; ".join(unknown)


def test_architecture_map_names_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = set(re.findall(r"\w+", FENCED.findall(text)[0]))
    engine = [path.stem for path in sorted((PACKAGE / "engine").glob("*.py")) if path.stem != "__init__"]
    others = [path.name for folder in (PACKAGE, PACKAGE / "widgets") for path in sorted(folder.glob("*.py"))
              if not path.stem.startswith("__")]
    missing = [f"engine/{name}.py" for name in engine if name not in diagram]
    missing += [name for name in others if name not in text]
    assert not missing, "docs/architecture.md does not say what these are for: " + ", ".join(missing)
