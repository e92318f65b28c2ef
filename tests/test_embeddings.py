"""Embedding models: told apart from chat models, planned, listed, and run by real llama.cpp.

The tiny BERT of tests/gguf_factory.py has random weights, so its vectors mean nothing;
llama.cpp really tokenizes (WordPiece) and encodes with it, so the vectors are real ones.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.engines.chat_llama.client import ChatEngineClient, ContextOverflowError
from app.engines.chat_llama.protocol import (
    Done,
    EmbeddingsEvent,
    EmbedRequest,
    GenerateRequest,
    LoadRequest,
)
from app.engines.chat_llama.worker import token_batches
from app.engines.errors import EngineError
from app.hardware.detect import this_machine
from app.models.gguf import read_gguf_facts
from app.models.kinds import kind_spec, plan_library_model
from app.models.portable import export_models, import_model
from app.paths import hearth_paths
from app.planner import LoadPlan, plan_embedding_load
from app.planner.chat import EMBEDDING_MAX_CTX
from app.sessions.chat import ChatSession, NotAChatModelError
from app.store.db import open_database
from app.store.library import ModelKind, list_models
from tests.gguf_factory import write_tiny_bert_gguf, write_tiny_gguf

HEARTH = [sys.executable, "-m", "app"]


@pytest.fixture
def bert(tmp_path: Path) -> Path:
    return write_tiny_bert_gguf(tmp_path / "Tiny-Bert-F32.gguf")


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


# --- telling them apart ---------------------------------------------------------------------


def test_a_gguf_with_a_pooling_type_is_an_embedding_model(tmp_path: Path, bert: Path) -> None:
    assert read_gguf_facts(bert).pooling == "mean"
    assert read_gguf_facts(bert).is_embedding
    # A decoder converted for embeddings (Qwen3-Embedding: qwen3 with last-token pooling).
    qwen = write_tiny_gguf(tmp_path / "qwen3-embed.gguf", arch="qwen3", pooling=3)
    assert read_gguf_facts(qwen).pooling == "last"
    chat = write_tiny_gguf(tmp_path / "chat.gguf")
    assert read_gguf_facts(chat).pooling is None and not read_gguf_facts(chat).is_embedding
    # Rerankers pool with "rank" (4): one score, not a vector. They are not embedding models.
    rank = write_tiny_gguf(tmp_path / "rank.gguf", arch="qwen3", pooling=4)
    assert read_gguf_facts(rank).pooling is None
    # A BERT without the key still cannot chat (no output head): mean, as sentence-transformers.
    bare = write_tiny_bert_gguf(tmp_path / "bare.gguf", pooling=0)
    assert read_gguf_facts(bare).pooling == "mean"


def test_an_imported_embedding_model_is_of_kind_embedding_and_not_offered_for_chat(
    bert: Path, tmp_path: Path
) -> None:
    paths = hearth_paths({"HEARTH_HOME": str(tmp_path / "home")}).ensure()
    db = open_database(paths.database)
    (model,) = import_model(bert, link=True, db=db, paths=paths)
    assert model.kind is ModelKind.EMBEDDING
    (again,) = import_model(bert, link=True, db=db, paths=paths)
    assert again.already_present  # found among the embedding models, not imported twice
    (row,) = list_models(db)
    assert row.kind is ModelKind.EMBEDDING and row.architecture == "bert"
    assert list_models(db, ModelKind.CHAT) == []  # what chat pickers list
    assert kind_spec(row.kind).label == "embedding"
    planned = plan_library_model(row, this_machine())
    assert isinstance(planned.plan, LoadPlan) and planned.error is None
    assert planned.plan.n_ctx == 128  # the tiny BERT's whole context
    session = ChatSession(db)
    with pytest.raises(NotAChatModelError, match="embedding model"):
        session.load_model(row.name)
    assert session.client.pid is None  # refused before any worker started
    db.close()


def test_an_embedding_model_exports_and_imports_back_as_one(bert: Path, tmp_path: Path) -> None:
    here = hearth_paths({"HEARTH_HOME": str(tmp_path / "here")}).ensure()
    there = hearth_paths({"HEARTH_HOME": str(tmp_path / "there")}).ensure()
    with closing(open_database(here.database)) as db:
        (model,) = import_model(bert, db=db, paths=here)  # copied into the models folder
        result = export_models([model.name], tmp_path / "usb", db=db)
    manifest = json.loads(result.manifest.read_text())
    assert manifest["models"][0]["kind"] == "embedding"
    assert manifest["models"][0]["entry"].endswith(".gguf")
    with closing(open_database(there.database)) as db:
        (back,) = import_model(tmp_path / "usb", db=db, paths=there)
        assert back.kind is ModelKind.EMBEDDING and back.sha256 == model.sha256
        assert [m.kind for m in list_models(db)] == [ModelKind.EMBEDDING]


def test_an_embedding_plan_reads_a_whole_input_in_one_batch(tmp_path: Path) -> None:
    long_ctx = write_tiny_gguf(tmp_path / "long.gguf", arch="qwen3", pooling=3)  # 2048 trained
    facts = read_gguf_facts(long_ctx)
    plan = plan_embedding_load(this_machine(), facts)
    assert plan.n_ctx == min(facts.context_length, EMBEDDING_MAX_CTX)
    request = LoadRequest.for_embeddings(str(long_ctx), plan, "last")
    assert request.n_batch == request.n_ctx == plan.n_ctx
    assert request.embedding_pooling == "last"
    assert "Embeds inputs of up to" in plan.reasons[0]


def test_token_batches_keep_each_batch_within_the_limit() -> None:
    counts = [3, 4, 5, 9, 1, 1]
    batches = list(token_batches(counts, 9))
    assert batches == [(0, 2), (2, 3), (3, 4), (4, 6)]
    assert all(sum(counts[a:b]) <= 9 for a, b in batches)
    assert list(token_batches([], 9)) == []


# --- the command line -----------------------------------------------------------------------


def test_models_list_and_show_say_embedding(bert: Path, hearth_home: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HEARTH, *args], capture_output=True, text=True, timeout=300, env=dict(os.environ)
        )

    imported = run("models", "import", str(bert))
    assert imported.returncode == 0, imported.stderr
    assert "Imported tiny-bert-f32 (embedding" in imported.stdout
    listed = run("models", "list")
    assert listed.returncode == 0, listed.stderr
    _, line = listed.stdout.splitlines()
    assert line.split()[:2] == ["tiny-bert-f32", "embedding"]
    assert "fits in RAM" in line
    [row] = json.loads(run("models", "list", "--json").stdout)
    assert row["kind"] == "embedding"
    shown = run("models", "show", "tiny-bert-f32")
    assert shown.returncode == 0, shown.stderr
    assert "kind:          embedding" in shown.stdout
    assert "vectors of 32 numbers (mean pooling)" in shown.stdout
    chat = run("chat", "-m", "tiny-bert-f32", "hello")
    assert chat.returncode != 0
    assert "embedding model" in chat.stderr and "cannot chat" in chat.stderr


# --- the engine -----------------------------------------------------------------------------


@pytest.fixture
def embedder(bert: Path) -> Iterator[ChatEngineClient]:
    plan = plan_embedding_load(this_machine(), read_gguf_facts(bert))
    with ChatEngineClient() as client:
        loaded = client.load(LoadRequest.for_embeddings(str(bert), plan, "mean"))
        assert loaded.n_ctx >= 128  # llama.cpp pads the context; the batch stays 128
        yield client


def embed(client: ChatEngineClient, *texts: str) -> EmbeddingsEvent:
    events = list(client.embed(EmbedRequest("e1", texts)))
    assert isinstance(events[-1], Done) and events[-1].reason == "complete"
    (result,) = (e for e in events if isinstance(e, EmbeddingsEvent))
    return result


def test_the_worker_embeds_each_text_into_one_unit_vector(embedder: ChatEngineClient) -> None:
    result = embed(embedder, "a cat sits on the mat", "stock fell", "a cat sits on the mat")
    assert len(result.vectors) == 3
    vectors = [result.floats(i) for i in range(3)]
    assert all(len(v) == 32 for v in vectors)
    assert all(abs(norm(v) - 1) < 1e-5 for v in vectors)
    # [CLS] a cat sits on the mat [SEP], and [CLS] stock fell [SEP]
    assert result.token_counts == (8, 4, 8)
    assert vectors[0] == pytest.approx(vectors[2], abs=1e-5)
    assert vectors[0] != pytest.approx(vectors[1], abs=1e-2)


def test_the_worker_refuses_a_text_longer_than_its_context_and_generation(
    embedder: ChatEngineClient,
) -> None:
    with pytest.raises(ContextOverflowError, match=r"input\[1\] is 402 tokens long.*128 tokens"):
        embed(embedder, "fine", "word " * 100)
    with pytest.raises(EngineError, match="embedding model"):
        list(embedder.generate(GenerateRequest("g1", "hello", max_tokens=4)))
    assert len(embed(embedder, "still here").vectors) == 1  # the worker lived on


def test_a_chat_load_refuses_to_embed(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "chat.gguf", chat_ready=True)
    with ChatEngineClient() as client:
        client.load(LoadRequest(str(gguf), n_ctx=256, n_gpu_layers=0, n_threads=1))
        with pytest.raises(EngineError, match="loaded for chat, not for embeddings"):
            embed(client, "hello")


# --- the window -----------------------------------------------------------------------------


def test_the_models_page_shows_an_embedding_model_with_no_chat_or_image_button(
    qtbot: QtBot, bert: Path, hearth_home: Path
) -> None:
    from app.gui.adapters.runner import BackgroundRunner
    from app.gui.pages.models import ModelsPage
    from app.store import open_default_database

    with closing(open_default_database()) as db:
        import_model(bert, link=True, db=db, paths=hearth_paths().ensure())
    runner = BackgroundRunner()
    page = ModelsPage(runner)
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.library_shown, timeout=60_000):
        page.refresh()
    assert page.select("tiny-bert-f32")
    assert page.details.field("Kind") == "embedding"
    assert page.details.field("Quant") is not None  # a GGUF's quantization, as for chat
    assert not page.details.chat_button.isVisibleTo(page.details)
    assert not page.details.images_button.isVisibleTo(page.details)
    runner.wait()
