"""The review list under the Segment widget: the tumour pieces, the doubtful ones first, one row each.

A row shows the piece's confidence, size and the slices it spans (across the axis on the viewer's slider, as the
readouts name their slice); its Keep box removes or restores the piece, a click on the row takes the viewer there.
The list only shows and forwards: which pieces exist, how sure they are and what removing one does to the mask live
in engine/pieces.py and engine/review.py.
"""

from __future__ import annotations

from typing import Callable

from magicgui.widgets import Label, Table
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QTableWidgetItem

from ..engine.pieces import Piece, doubtful_first
from .readouts import along_axis

COLUMNS = ("Keep", "Confidence", "Size", "Slices")
SPAN = COLUMNS.index("Slices")
MAX_ROWS = 200  # a noisy mask can have thousands of specks; a longer table only slows the viewer down


class ReviewList:
    """A caption and a table of pieces; `on_row(piece)` when a row is clicked, `on_keep(index, keep)` when a Keep box
    is ticked or cleared (`index` is the piece's number in the piece labels)."""

    def __init__(self, on_row: Callable[[Piece], None], on_keep: Callable[[int, bool], None]) -> None:
        self.caption = Label(name="pieces_caption", label="Pieces", value="")
        self.table = Table(name="pieces", label="", columns=list(COLUMNS))
        self.rows: list[Piece] = []
        self._unit, self._axis = "", 0
        native = self.table.native
        native.setEditTriggers(QAbstractItemView.NoEditTriggers)
        native.setSelectionBehavior(QAbstractItemView.SelectRows)
        native.cellClicked.connect(lambda row, _column: on_row(self.rows[row]))
        native.itemChanged.connect(
            lambda item: item.column() == 0 and on_keep(self.rows[item.row()].index, item.checkState() == Qt.Checked)
        )
        self.show_pieces([], set(), "")

    @property
    def widgets(self) -> list:
        return [self.caption, self.table]

    def show_pieces(self, pieces: list[Piece], removed: set[int], unit: str, axis: int = 0) -> None:
        """Fill the table, doubtful pieces first; `unit` is the voxel-volume unit ('' shows sizes in voxels), `axis`
        the data axis on the viewer's slider (see `show_axis`)."""
        self.rows = doubtful_first(pieces)[:MAX_ROWS]
        self._unit, self._axis = unit, axis
        native = self.table.native
        native.blockSignals(True)
        native.setRowCount(len(self.rows))
        for row, piece in enumerate(self.rows):
            keep = QTableWidgetItem()
            keep.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled | Qt.ItemIsSelectable)
            keep.setCheckState(Qt.Unchecked if piece.index in removed else Qt.Checked)
            native.setItem(row, 0, keep)
            for column, text in enumerate(self._cells(piece), start=1):
                native.setItem(row, column, QTableWidgetItem(text))
        self._name_span_column()
        native.blockSignals(False)
        shown = f"the {MAX_ROWS} least sure of {len(pieces)} pieces" if len(pieces) > MAX_ROWS else (
            "1 piece" if len(pieces) == 1 else f"{len(pieces)} pieces, least sure first")
        self.caption.value = (f"{shown}; untick Keep to remove one, click a row to see it" if pieces
                              else "Segment an image to review its tumour pieces.")

    def show_keep(self, index: int, keep: bool) -> None:
        """Set the Keep box of piece `index` without reporting it (the change the user asked for was not made)."""
        native = self.table.native
        native.blockSignals(True)
        for row, piece in enumerate(self.rows):
            if piece.index == index:
                native.item(row, 0).setCheckState(Qt.Checked if keep else Qt.Unchecked)
        native.blockSignals(False)

    def show_axis(self, axis: int) -> None:
        """Give the slices the pieces span across data axis `axis`, which the user put on the viewer's slider: the
        column gave those across the first axis, positions of no slider then."""
        if axis != self._axis:
            self._axis = axis
            native = self.table.native
            native.blockSignals(True)
            for row, piece in enumerate(self.rows):
                native.item(row, SPAN).setText(self._span(piece))
            self._name_span_column()
            native.blockSignals(False)

    def _name_span_column(self) -> None:
        """'Slices', or 'Slices along axis 2' when the slider is not on the scan's own slice axis."""
        self.table.native.horizontalHeaderItem(SPAN).setText(COLUMNS[SPAN] + along_axis(self._axis))

    def keep_box(self, row: int) -> QTableWidgetItem:
        return self.table.native.item(row, 0)

    def _cells(self, piece: Piece) -> tuple[str, str, str]:
        """Confidence, size and span of `piece`, as the columns after Keep show them."""
        unit = self._unit
        size = f"{size_text(piece.size)} {unit}" if unit and piece.size is not None else f"{piece.voxels} voxels"
        return f"{piece.confidence:.2f}", size, self._span(piece)

    def _span(self, piece: Piece) -> str:
        first, last = piece.extent[self._axis]
        return f"{first}-{last}" if last > first else str(first)


def size_text(size: float) -> str:
    """A piece's size for its row: whole numbers from 100 up (a tumour's mm³), three significant digits below, so a
    piece of a layer in µm (converted to mm³, thousandths or less) does not read as 0."""
    return f"{size:.0f}" if size >= 100 else f"{size:.3g}"
