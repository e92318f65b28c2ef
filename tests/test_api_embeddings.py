"""POST /v1/embeddings through the real `openai` client, on a real server on 127.0.0.1.

The library holds a tiny BERT embedding model and a tiny chat model (random weights, both
run by real llama.cpp). Every JSON body is checked against the OpenAI schemas in
tests/data/openai/.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import openai
import pytest

from app.api.server import ApiServer, ServeConfig
from app.engines.chat_llama.client import ChatEngineClient
from app.models.portable import import_model
from app.paths import hearth_paths
from app.planner import LoadSettings
from app.sessions.serving import CompletionService
from app.store.db import open_database
from tests.gguf_factory import write_tiny_bert_gguf, write_tiny_gguf

KEY = "hearth-test-key-for-the-embedding-server"
SCHEMAS = Path(__file__).parent / "data" / "openai"
EMBEDDINGS, ERROR, MODELS = (
    jsonschema_rs.validator_for(json.loads((SCHEMAS / f"{name}.json").read_text()))
    for name in ("embeddings", "error", "model_list")
)
CAT = "a cat sits on the mat"


class Served:
    def __init__(self, api: ApiServer, embedder: str, chat: str) -> None:
        self.api, self.embedder, self.chat = api, embedder, chat


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("api-embeddings")
    paths = hearth_paths({"HEARTH_HOME": str(root / "home")}).ensure()
    db = open_database(paths.database)
    (embedder,) = import_model(
        write_tiny_bert_gguf(root / "tiny-bert.gguf"), link=True, db=db, paths=paths
    )
    (chat,) = import_model(
        write_tiny_gguf(root / "tiny-chat.gguf", chat_ready=True), link=True, db=db, paths=paths
    )
    db.close()
    service = CompletionService(
        lambda: open_database(paths.database), load_settings=LoadSettings(n_ctx=512)
    )
    api = ApiServer(ServeConfig(port=0, key=KEY), service=service)
    api.start()
    yield Served(api, embedder.name, chat.name)
    api.stop()


@pytest.fixture
def client(served: Served) -> Iterator[openai.OpenAI]:
    assert served.api.service.wait_idle(30)
    with openai.OpenAI(
        base_url=f"{served.api.url}/v1", api_key=KEY, max_retries=0, timeout=60
    ) as c:
        yield c


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    assert served.api.service.wait_idle(30)
    with httpx.Client(
        base_url=served.api.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60
    ) as c:
        yield c


def embeddings(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post("/v1/embeddings", json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    EMBEDDINGS.validate(data)
    return data


def refused(http: httpx.Client, status: int, code: str, **body: Any) -> dict[str, Any]:
    response = http.post("/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()
    ERROR.validate(error)
    assert error["error"]["code"] == code
    return error["error"]


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (norm(a) * norm(b))


def test_a_text_becomes_one_unit_vector_of_the_models_size(
    client: openai.OpenAI, served: Served
) -> None:
    reply = client.embeddings.create(model=served.embedder, input=CAT)
    (item,) = reply.data
    assert item.index == 0 and item.object == "embedding"
    assert len(item.embedding) == 32  # the tiny BERT's embedding length
    assert abs(norm(item.embedding) - 1) < 1e-5
    assert reply.model == served.embedder
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == 8  # [CLS] 6 words [SEP]


def test_the_same_text_gives_the_same_vector_and_another_text_another(
    client: openai.OpenAI, served: Served
) -> None:
    first = client.embeddings.create(model=served.embedder, input=CAT).data[0].embedding
    again = client.embeddings.create(model=served.embedder, input=CAT).data[0].embedding
    other = client.embeddings.create(model=served.embedder, input="stock fell").data[0].embedding
    assert again == pytest.approx(first, abs=1e-6)
    assert cosine(first, other) < 0.99


def test_a_batch_gives_one_vector_per_input_in_order(client: openai.OpenAI, served: Served) -> None:
    texts = ["stock fell", CAT, "the kitten is on the rug"]
    reply = client.embeddings.create(model=served.embedder, input=texts)
    assert [d.index for d in reply.data] == [0, 1, 2]
    for text, item in zip(texts, reply.data, strict=True):
        alone = client.embeddings.create(model=served.embedder, input=text).data[0].embedding
        assert item.embedding == pytest.approx(alone, abs=1e-5), text
    alone_tokens = sum(
        client.embeddings.create(model=served.embedder, input=t).usage.prompt_tokens for t in texts
    )
    assert reply.usage.prompt_tokens == alone_tokens


def test_base64_is_the_little_endian_float32_bytes_of_the_floats(
    http: httpx.Client, served: Served
) -> None:
    texts = [CAT, "stock fell"]
    floats = embeddings(http, model=served.embedder, input=texts, encoding_format="float")
    packed = embeddings(http, model=served.embedder, input=texts, encoding_format="base64")
    for as_floats, as_base64 in zip(floats["data"], packed["data"], strict=True):
        raw = base64.b64decode(as_base64["embedding"])
        assert len(raw) == 32 * 4
        # The floats are float32 values: the bytes decode to exactly the same numbers.
        assert list(struct.unpack("<32f", raw)) == as_floats["embedding"]
    assert floats["usage"] == packed["usage"]
    same = embeddings(http, model=served.embedder, input=CAT, dimensions=32)
    assert len(same["data"][0]["embedding"]) == 32


def test_a_chat_model_asked_for_embeddings_gets_a_clear_400(
    client: openai.OpenAI, served: Served
) -> None:
    with pytest.raises(openai.BadRequestError) as chat_model:
        client.embeddings.create(model=served.chat, input=CAT)
    error = chat_model.value.response.json()
    ERROR.validate(error)
    assert error["error"]["code"] == "model_not_supported"
    assert error["error"]["param"] == "model"
    assert "is a chat model, not an embedding model" in error["error"]["message"]


def test_an_embedding_model_asked_for_a_reply_gets_a_clear_400(
    client: openai.OpenAI, served: Served, http: httpx.Client
) -> None:
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(
            model=served.embedder, messages=[{"role": "user", "content": "Hi"}]
        )
    error = chat.value.response.json()
    ERROR.validate(error)
    assert error["error"]["code"] == "model_not_supported"
    assert "is an embedding model" in error["error"]["message"]
    assert "cannot make replies" in error["error"]["message"]
    completion = http.post("/v1/completions", json={"model": served.embedder, "prompt": "Hi"})
    assert completion.status_code == 400
    assert completion.json()["error"]["code"] == "model_not_supported"


def test_an_input_longer_than_the_model_reads_is_a_400(http: httpx.Client, served: Served) -> None:
    error = refused(
        http, 400, "context_length_exceeded", model=served.embedder, input=[CAT, "word " * 100]
    )
    assert error["param"] == "input"
    assert "input[1] is 402 tokens long" in error["message"]
    assert "at most 128 tokens" in error["message"] and "Split the text" in error["message"]
    assert embeddings(http, model=served.embedder, input=CAT)["data"]  # still serving


def test_empty_token_and_resized_inputs_are_refused_naming_the_field(
    http: httpx.Client, served: Served
) -> None:
    model = served.embedder
    assert refused(http, 400, "invalid_request", model=model, input=[])["param"] == "input"
    empty = refused(http, 400, "invalid_request", model=model, input=[CAT, ""])
    assert empty["param"] == "input" and "input[1] is an empty string" in empty["message"]
    for tokens in ([101, 2023, 102], [[101, 102]]):
        error = refused(http, 400, "invalid_request", model=model, input=tokens)
        assert error["param"] == "input" and "token ids" in error["message"]
    resized = refused(http, 400, "invalid_request", model=model, input=CAT, dimensions=16)
    assert resized["param"] == "dimensions"
    assert "vectors of 32 dimensions" in resized["message"]
    assert refused(http, 404, "model_not_found", model="no-such-model", input=CAT)


def test_both_models_are_listed_and_stay_loaded_side_by_side(
    client: openai.OpenAI, served: Served, http: httpx.Client
) -> None:
    listing = http.get("/v1/models").json()
    MODELS.validate(listing)
    assert {served.embedder, served.chat} <= {m["id"] for m in listing["data"]}
    service = served.api.service
    client.embeddings.create(model=served.embedder, input=CAT)
    engine = service._embedding_engine
    assert isinstance(engine, ChatEngineClient) and engine.pid is not None
    pid = engine.pid
    client.chat.completions.create(
        model=served.chat, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    client.embeddings.create(model=served.embedder, input=CAT)
    # A program that embeds and chats in turn reloads neither model.
    assert engine.pid == pid
    assert set(service.loaded_models()) == {served.embedder, served.chat}
    # `hearth serve --model` preloads an embedding model in its own place too.
    assert service.preload(served.embedder).n_ctx >= 128
    assert engine.pid == pid and service.loaded_model == served.chat


def test_real_minilm_vectors_put_like_meanings_together(minilm_gguf: Path, tmp_path: Path) -> None:
    """all-MiniLM-L6-v2, converted from its real weights, served as OpenAI serves embeddings."""
    paths = hearth_paths({"HEARTH_HOME": str(tmp_path / "home")}).ensure()
    db = open_database(paths.database)
    (model,) = import_model(minilm_gguf, link=True, db=db, paths=paths)
    db.close()
    assert model.kind.value == "embedding"
    api = ApiServer(
        ServeConfig(port=0, key=KEY),
        service=CompletionService(lambda: open_database(paths.database)),
    )
    api.start()
    try:
        with openai.OpenAI(base_url=f"{api.url}/v1", api_key=KEY, max_retries=0) as client:
            texts = [CAT, "a kitten is on the rug", "stock prices fell today"]
            reply = client.embeddings.create(model=model.name, input=texts)
    finally:
        api.stop()
    cat, kitten, stocks = (d.embedding for d in reply.data)
    assert len(cat) == 384
    # The numbers sentence-transformers' own model gives (transformers, mean pooling,
    # normalised): the conversion and llama.cpp's BERT keep them.
    assert cat[:4] == pytest.approx([0.12872, -0.03267, -0.02292, 0.04023], abs=2e-3)
    assert cosine(cat, kitten) == pytest.approx(0.608, abs=0.01)
    assert cosine(cat, stocks) == pytest.approx(0.079, abs=0.01)
    assert cosine(cat, kitten) > cosine(cat, stocks) + 0.4
    assert reply.usage.prompt_tokens == 8 + 8 + 6  # WordPiece, [CLS] and [SEP] each
