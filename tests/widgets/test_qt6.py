"""napari's default Qt binding (Qt6): the viewer opens without the notice napari shows on the deprecated Qt5 one."""

from __future__ import annotations

import qtpy
from napari.utils.notifications import notification_manager, show_warning


def test_the_viewer_runs_on_qt6_and_shows_no_deprecation_notice(make_napari_viewer, qtbot):
    show_warning("probe: notifications are recorded")  # proves the check below can see a notice
    viewer = make_napari_viewer(show=True)
    qtbot.waitExposed(viewer.window._qt_window)
    messages = [str(record.message) for record in notification_manager.records]
    assert "probe: notifications are recorded" in messages
    assert qtpy.QT6, (
        f"tests run on {qtpy.API_NAME}; install napari[qt] (the testing extra) for napari's default binding"
    )
    assert not [message for message in messages if "deprecated" in message.lower()], messages
