"""POST /v1/images/generations on the tiny real pipeline: b64 PNGs, none in the gallery."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from app.api.server import ApiServer, ServeConfig
from app.models.diffusers_folder import read_diffusers_facts
from app.models.library import register_model
from app.paths import hearth_paths
from app.sessions.serving import CompletionService
from app.store.db import open_database
from app.store.gallery import list_images

KEY = "hearth-test-key-for-the-image-server"


@pytest.fixture
def served(tiny_pipeline: Path, tmp_path: Path) -> Iterator[tuple[ApiServer, Path]]:
    paths = hearth_paths({"HEARTH_HOME": str(tmp_path / "home")}).ensure()
    db = open_database(paths.database)
    facts = read_diffusers_facts(tiny_pipeline)
    # "turbo" in the name: one step makes an image, so the test stays quick.
    register_model(db, "tiny-turbo", tiny_pipeline, facts, source="import", sha256=None)
    db.close()
    service = CompletionService(lambda: open_database(paths.database))
    api = ApiServer(ServeConfig(port=0, key=KEY), service=service)
    api.start()
    yield api, paths.database
    api.stop()


def test_images_come_back_as_b64_pngs_and_stay_out_of_the_gallery(
    served: tuple[ApiServer, Path],
) -> None:
    api, database = served
    client = openai.OpenAI(base_url=f"{api.url}/v1", api_key=KEY, max_retries=0, timeout=300)
    assert "tiny-turbo" in [m.id for m in client.models.list()]
    result = client.images.generate(
        model="tiny-turbo", prompt="a red boat", n=2, size="64x64", response_format="b64_json"
    )
    assert len(result.data) == 2
    for image in result.data:
        assert base64.b64decode(image.b64_json or "").startswith(b"\x89PNG\r\n\x1a\n")
    db = open_database(database)
    assert list_images(db) == []
    db.close()
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="tiny-turbo", prompt="x", response_format="url")
