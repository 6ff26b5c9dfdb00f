"""Vision pretraining of the demo model: targets in the processor's token order, labels, and learning."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from calibration.synth.parts import CATEGORIES  # noqa: E402
from station.backends.hf.processor import QwenVLImageProcessor  # noqa: E402
from station.backends.hf.tiny import TINY_SHAPE, build_config, build_tokenizer  # noqa: E402
from train.vision_pretrain import (  # noqa: E402
    DefectHead,
    VisionPretrainConfig,
    balanced_accuracy,
    batch_loss,
    curriculum,
    draw_sample,
    pretrain_vision,
    token_targets,
)


def processor(max_side: int = 64) -> QwenVLImageProcessor:
    return QwenVLImageProcessor(
        patch_size=16,
        min_pixels=32 * 32,
        max_pixels=max_side * max_side,
        image_mean=(0.5,) * 3,
        image_std=(0.5,) * 3,
    )


def test_token_targets_follow_the_processors_row_major_windows():
    mask = np.zeros((128, 128), bool)
    mask[5, 5] = True  # top-left 32x32 window
    mask[100, 40] = True  # row 3, column 1 of the 4x4 windows
    targets = token_targets(mask, grid_h=8, grid_w=8, merge=2)
    assert targets.shape == (16,)
    assert np.flatnonzero(targets).tolist() == [0, 3 * 4 + 1]


def test_token_targets_mark_the_window_where_the_processor_puts_a_bright_patch():
    """The window the target marks is the window whose token carries the bright pixels."""
    image = np.zeros((128, 128, 3), np.uint8)
    image[64:96, 96:128] = 255  # window row 2, column 3
    features = processor(128)(image)
    grid = features["image_grid_thw"][0]
    patches = features["pixel_values"].reshape(
        -1, 4, features["pixel_values"].shape[-1]
    )  # 4 patches per window
    bright = patches.mean(dim=(1, 2)) > 0
    targets = token_targets(image[..., 0] > 0, int(grid[1]), int(grid[2]), 2)
    assert np.flatnonzero(targets).tolist() == torch.nonzero(bright).flatten().tolist() == [2 * 4 + 3]


def test_draw_sample_labels_agree_with_masks():
    rng = np.random.default_rng(0)
    samples = [draw_sample(rng, 64, crop_ratio=0.5) for _ in range(40)]
    labels = [label for _, _, label in samples]
    assert 0 < sum(labels) < len(labels)
    for image, mask, label in samples:
        assert image.shape[:2] == mask.shape
        assert label == int(mask.any())


def test_balanced_accuracy():
    scores = np.array([1.0, -1.0, 2.0, -2.0])
    labels = np.array([1, 1, 0, 0])
    assert balanced_accuracy(scores, labels) == pytest.approx(0.5)
    assert balanced_accuracy(np.array([1.0, 1.0, -2.0, 2.0]), labels) == pytest.approx(0.75)


def test_the_tower_learns_a_fixed_batch_and_pretraining_touches_only_the_tower():
    from transformers import Qwen3VLForConditionalGeneration

    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(build_config(build_tokenizer(), TINY_SHAPE))
    rng = np.random.default_rng(1)
    samples = [draw_sample(rng, 64, crop_ratio=0.0) for _ in range(4)]
    head = DefectHead(model.config.text_config.hidden_size)
    optimizer = torch.optim.AdamW([*model.model.visual.parameters(), *head.parameters()], lr=3e-3)
    first = None
    for _ in range(15):
        loss, _, _ = batch_loss(model.model.visual, head, processor(), samples)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.7 * first

    language = {k: v.clone() for k, v in model.model.language_model.state_dict().items()}
    tower = {k: v.clone() for k, v in model.model.visual.state_dict().items()}
    figures = pretrain_vision(
        model,
        processor(),
        VisionPretrainConfig(steps=2, batch_size=4, warmup_steps=1, image_size=64, eval_samples=8),
    )
    assert 0 <= figures["heldout_balanced_accuracy"] <= 1 and 0 <= figures["heldout_image_auroc"] <= 1
    assert set(figures["heldout_auroc_by_family"]) == set(CATEGORIES)
    assert all(torch.equal(v, model.model.language_model.state_dict()[k]) for k, v in language.items())
    assert any(not torch.equal(v, model.model.visual.state_dict()[k]) for k, v in tower.items())


def test_an_interrupted_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path):
    from transformers import Qwen3VLForConditionalGeneration

    def fresh():
        torch.manual_seed(0)
        return Qwen3VLForConditionalGeneration(build_config(build_tokenizer(), TINY_SHAPE))

    def config(steps: int) -> VisionPretrainConfig:
        return VisionPretrainConfig(
            steps=steps, batch_size=2, warmup_steps=1, image_size=64, eval_samples=4, checkpoint_every=2
        )

    straight = fresh()
    pretrain_vision(straight, processor(), config(3))

    class Killed(Exception):
        pass

    def kill(step: int) -> None:
        raise Killed(step)

    checkpoint = tmp_path / "state.pt"
    with pytest.raises(Killed):  # killed right after the checkpoint at step 2
        pretrain_vision(fresh(), processor(), config(3), checkpoint=checkpoint, on_checkpoint=kill)
    assert checkpoint.is_file()
    steps: list[int] = []
    resumed = fresh()  # a new process: the weights come from the checkpoint
    pretrain_vision(resumed, processor(), config(3), checkpoint=checkpoint, on_checkpoint=steps.append)
    assert steps == [3]
    for key, value in straight.model.visual.state_dict().items():
        torch.testing.assert_close(resumed.model.visual.state_dict()[key], value)


def test_the_curriculum_eases_from_its_start_values_to_the_real_defects():
    config = VisionPretrainConfig(
        curriculum_steps=100, amplify_start=4.0, crop_ratio_start=1.0, crop_ratio=0.3
    )
    assert curriculum(config, 0) == pytest.approx((4.0, 1.0))
    assert curriculum(config, 50) == pytest.approx((2.5, 0.65))
    assert curriculum(config, 100) == (1.0, 0.3)
    assert curriculum(config, 5000) == (1.0, 0.3)
    assert curriculum(VisionPretrainConfig(curriculum_steps=0, crop_ratio=0.3), 0) == (1.0, 0.3)


def test_amplified_defects_change_only_the_defect_and_leave_the_stream_and_good_parts_alone():
    """Same stream position, same part: only the defect (its mask and anti-aliased rim) gets louder."""
    import cv2

    rng_plain, rng_loud = np.random.default_rng(4), np.random.default_rng(4)
    louder = 0
    for _ in range(30):
        image, mask, label = draw_sample(rng_plain, 96, crop_ratio=0.0)
        loud, loud_mask, loud_label = draw_sample(rng_loud, 96, crop_ratio=0.0, amplify=3.0)
        assert label == loud_label and np.array_equal(mask, loud_mask)
        if not label:
            assert np.array_equal(image, loud)
            continue
        rim = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        assert np.array_equal(image[~rim], loud[~rim])
        louder += int(np.abs(loud[mask].astype(int) - image[mask].astype(int)).mean() > 1)
    assert louder > 5
