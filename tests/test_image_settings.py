"""ImageSettings: what a person asks for, and the settings an earlier image was made with."""

from __future__ import annotations

from app.sessions.image import ImageSettings
from app.store.gallery import ImageParams


def test_an_images_settings_can_be_used_again() -> None:
    params = ImageParams(
        prompt="a lighthouse at dusk",
        seed=42,
        steps=20,
        guidance=6.5,
        width=512,
        height=768,
        negative_prompt="fog",
        scheduler="DPM++ 2M",
        model="sd-turbo",
        extra={"device": "cpu"},
    )
    again = ImageSettings.from_params(params)
    assert again == ImageSettings(
        prompt="a lighthouse at dusk",
        negative_prompt="fog",
        steps=20,
        guidance=6.5,
        width=512,
        height=768,
        seed=42,
        scheduler="DPM++ 2M",
    )


def test_an_image_made_with_the_models_own_scheduler_leaves_the_choice_to_the_model() -> None:
    params = ImageParams(prompt="a fox", seed=1, steps=1, guidance=0.0, width=512, height=512)
    assert ImageSettings.from_params(params).scheduler is None
