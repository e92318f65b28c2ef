"""The window's Server page: off by default, turned on it serves /v1/models, turned off it stops."""

from __future__ import annotations

import httpx
import pytest
from pytestqt.qtbot import QtBot

from app.gui.pages.server import ServerPage


def test_the_server_page_turns_the_api_on_and_off(qtbot: QtBot) -> None:
    page = ServerPage()
    qtbot.addWidget(page)
    assert not page.switch.isChecked() and page.url.text() == "Off"
    page.port.setValue(0)  # any free port
    states: list[str] = []
    page.api_state.connect(states.append)

    with qtbot.waitSignal(page.api_state, timeout=30_000):
        page.switch.setChecked(True)
    url = page.url.text()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    assert states == [f"API on {url.removesuffix('/v1')}"]
    key = page.key.text()
    assert key.startswith("hearth-")
    page.copy_key.click()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == key

    response = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 200 and response.json()["object"] == "list"
    assert httpx.get(f"{url}/models", timeout=10).status_code == 401

    with qtbot.waitSignal(page.api_state, timeout=30_000):
        page.switch.setChecked(False)
    assert page.url.text() == "Off" and states[-1] == ""
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", timeout=5)


def test_a_network_address_needs_confirmation(qtbot: QtBot) -> None:
    page = ServerPage()
    qtbot.addWidget(page)
    asked: list[str] = []

    def refuse(_parent: object, host: str) -> bool:
        asked.append(host)
        return False

    page.confirm_lan = refuse
    page.host.setText("0.0.0.0")
    page.switch.setChecked(True)
    assert asked == ["0.0.0.0"]
    assert not page.switch.isChecked() and not page.controller.running
