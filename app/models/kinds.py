"""The model kinds registry: for each `ModelKind`, how to read its facts and plan its load.

Adding a kind (a remote model, a reranker) is one `KindSpec` here plus its engine; every
place that handles "any library model" goes through `KINDS` instead of comparing strings.
Chat and embedding models are both GGUF files read by `read_gguf_facts`: the facts say
which (`ChatModelFacts.pooling`), and an embedding model is planned with its whole
context in one batch.

    plan = plan_model(find_model(db, "sd-turbo"), detect_hardware())  # an ImagePlan
    row = plan_library_model(model, hardware)  # the same, a bad file kept as row.error
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from app.errors import HearthError
from app.hardware.profile import HardwareProfile
from app.models.diffusers_folder import read_diffusers_facts
from app.models.gguf import read_gguf_facts
from app.planner import (
    ImagePlan,
    LoadPlan,
    LoadSettings,
    plan_embedding_load,
    plan_image_load,
    plan_load,
)
from app.planner.facts import ChatModelFacts, ImageModelFacts
from app.store.library import LibraryModel, ModelKind, ModelSource

ModelFacts = ChatModelFacts | ImageModelFacts
ModelPlan = LoadPlan | ImagePlan


@dataclass(frozen=True)
class KindSpec:
    """What Hearth does with one kind of model."""

    kind: ModelKind
    label: str  # for people: "chat", "image", "embedding"
    #: Read the facts the planner needs from the model's file or folder (raises a
    #: ModelFileError subclass when it is missing, damaged or not this kind).
    inspect: Callable[[Path], ModelFacts]
    #: Turn facts + hardware + settings into a load plan with a fit verdict.
    plan: Callable[[ModelFacts, HardwareProfile, LoadSettings | None], ModelPlan]


def _plan_chat(facts: ModelFacts, hw: HardwareProfile, settings: LoadSettings | None) -> ModelPlan:
    return plan_load(hw, cast(ChatModelFacts, facts), settings)


def _plan_embedding(
    facts: ModelFacts, hw: HardwareProfile, settings: LoadSettings | None
) -> ModelPlan:
    return plan_embedding_load(hw, cast(ChatModelFacts, facts), settings)


def _plan_image(facts: ModelFacts, hw: HardwareProfile, settings: LoadSettings | None) -> ModelPlan:
    return plan_image_load(hw, cast(ImageModelFacts, facts), settings)


KINDS: dict[ModelKind, KindSpec] = {
    ModelKind.CHAT: KindSpec(ModelKind.CHAT, "chat", read_gguf_facts, _plan_chat),
    ModelKind.IMAGE: KindSpec(ModelKind.IMAGE, "image", read_diffusers_facts, _plan_image),
    ModelKind.EMBEDDING: KindSpec(
        ModelKind.EMBEDDING, "embedding", read_gguf_facts, _plan_embedding
    ),
}


def kind_spec(kind: ModelKind | str) -> KindSpec:
    """The registry entry for `kind` (a ModelKind or its stored text)."""
    return KINDS[ModelKind(kind)]


def inspect_model(model: LibraryModel) -> ModelFacts:
    """Read a library model's facts from its file or folder, as its kind."""
    return KINDS[model.kind].inspect(model.path)


def plan_model(
    model: LibraryModel, hw: HardwareProfile, settings: LoadSettings | None = None
) -> ModelPlan:
    """Plan any library model as its kind: a LoadPlan for chat and embedding, an ImagePlan
    for image.

    Raises what the kind's inspector raises (ModelNotFoundError when the file is gone,
    a ModelFileError when it is damaged).
    """
    spec = KINDS[model.kind]
    return spec.plan(spec.inspect(model.path), hw, settings)


@dataclass(frozen=True)
class PlannedModel:
    """A library model with its facts and plan on one machine, or the error that stopped them."""

    model: LibraryModel
    facts: ModelFacts | None = None
    plan: ModelPlan | None = None
    #: Why there is no plan: its file is gone (ModelNotFoundError), damaged or unsupported
    #: (another ModelFileError), or the planner refused it.
    error: HearthError | None = None

    @property
    def problem(self) -> str | None:
        """The error as one sentence of cause and one of remedy, or None."""
        return str(self.error) if self.error is not None else None


def plan_library_model(
    model: LibraryModel, hw: HardwareProfile, settings: LoadSettings | None = None
) -> PlannedModel:
    """Plan one library model as its kind, for a list of them (the Models page, `hearth models
    list` and `show`): a missing or damaged file is the row's `error`, not an exception."""
    spec = KINDS[model.kind]
    try:
        facts = spec.inspect(model.path)
    except HearthError as exc:
        return PlannedModel(model, error=exc)
    try:
        return PlannedModel(model, facts, spec.plan(facts, hw, settings))
    except HearthError as exc:
        return PlannedModel(model, facts, error=exc)


__all__ = [
    "KINDS",
    "KindSpec",
    "ModelFacts",
    "ModelKind",
    "ModelPlan",
    "ModelSource",
    "PlannedModel",
    "inspect_model",
    "kind_spec",
    "plan_library_model",
    "plan_model",
]
