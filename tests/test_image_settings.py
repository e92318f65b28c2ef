"""ImageSettings: what a person asks for, and the settings an earlier image was made with."""

from __future__ import annotations

from dataclasses import replace

from app.sessions.image import ImageSettings
from app.store.gallery import ImageParams

MADE = ImageParams(prompt="a fox", seed=42, steps=20, guidance=6.5, width=512, height=768)


def test_an_images_settings_can_be_used_again() -> None:
    made = replace(MADE, negative_prompt="fog", scheduler="DPM++ 2M", model="sd-turbo")
    again = ImageSettings.from_params(made)
    assert (again.prompt, again.negative_prompt, again.seed) == ("a fox", "fog", 42)
    assert (again.steps, again.guidance, again.width, again.height) == (20, 6.5, 512, 768)
    assert again.scheduler == "DPM++ 2M"
    assert (again.n_images, again.preview_every) == (1, 5)  # asked anew each time


def test_an_image_made_with_the_models_own_scheduler_leaves_the_choice_to_the_model() -> None:
    assert MADE.scheduler == ""
    assert ImageSettings.from_params(MADE).scheduler is None


def test_the_size_rule_is_one_for_every_face() -> None:
    import pytest

    from app.planner.image_size import ImageSizeError, image_size, parse_size

    assert image_size(None, None, "sd15", 512) == (512, 512)
    assert image_size(None, 768, "sd15", 512) == (512, 768)
    assert parse_size(" 64 x 64 ") == parse_size("64X64") == parse_size("64×64") == (64, 64)
    for width, height in [(0, 0), (0, 64), (-64, 64), (63, 64), (4096, 64), (56, 64)]:
        with pytest.raises(ImageSizeError):
            image_size(width, height, "sd15", 512)
    for text in ["64", "64x", "x64", "64x64x64", "sixty-four", ""]:
        with pytest.raises(ImageSizeError, match="is not an image size"):
            parse_size(text)
