"""The load planner: model facts + hardware + settings -> a load plan with a fit verdict (pure)."""

from app.planner.budget import FitVerdict, LoadSettings
from app.planner.chat import (
    GpuLayers,
    LoadPlan,
    MemoryEstimate,
    plan_embedding_load,
    plan_load,
)
from app.planner.image import Device, Dtype, ImageMemoryMode, ImagePlan, plan_image_load

__all__ = [
    "Device",
    "Dtype",
    "FitVerdict",
    "GpuLayers",
    "ImageMemoryMode",
    "ImagePlan",
    "LoadPlan",
    "LoadSettings",
    "MemoryEstimate",
    "plan_embedding_load",
    "plan_image_load",
    "plan_load",
]
