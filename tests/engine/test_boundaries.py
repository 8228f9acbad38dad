import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "src" / "napari_lgg_unet" / "engine"


def test_engine_imports_no_napari_or_qt():
    modules = sorted(p.stem for p in ENGINE.glob("*.py") if p.stem != "__init__")
    code = (
        "import sys\n"
        + "".join(f"import napari_lgg_unet.engine.{m}\n" for m in modules)
        + "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'magicgui', 'superqt', 'vispy')"
        + " or m.startswith(('PyQt', 'PySide'))]\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(modules) >= 10
    assert out.stdout.strip() == ""
