"""SFT of a Qwen-VL checkpoint on Indus-CoT trajectories with TRL's `SFTTrainer` (IndusAgent, section 2.3).

What the model reads during SFT must be byte for byte what the station (and GRPO) will show it: the system
prompt, then the tools block the chat template renders from ``tools``. TRL's vision collator renders
messages without ``tools``, so `IndusCoTCollator` stands in for it; it renders with TRL's training variant of
the Qwen3-VL template (the same text plus ``{% generation %}`` markers) and keeps the loss on the assistant
turns only: the reasoning, the tool calls and the answer with their end-of-turn token. The system prompt,
the user turn, the tool results (text and images) and the padding are masked to -100, so the model is
never taught to predict an observation it will be handed by a tool.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from station.backends.hf.processor import QwenVLProcessor
from train.cot import load_trajectories
from train.cot.dataset import TRAJECTORIES_FILE, protocol_message
from train.sft_config import SFTConfigError, SFTRunConfig

log = logging.getLogger(__name__)
IGNORE_INDEX = -100  # the label transformers' loss skips
STATE_FILE = "trainer_state.json"  # the run's log history (loss per logging step), as in every checkpoint-N


@dataclass
class IndusCoTCollator:
    """Renders, tokenizes and masks a batch of rows of `build_dataset` (stored messages, tools as JSON).

    ``chat_template`` is the training variant of the processor's template (`trl.chat_template_utils.
    get_training_chat_template`); it renders the same text, so the tokens are those inference will see.
    Images are read from ``dataset_dir`` per batch, so a large set never sits in memory decoded.
    """

    processor: QwenVLProcessor
    chat_template: str
    dataset_dir: Path

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tools = rows[0]["tools"]
        if any(row["tools"] != tools for row in rows[1:]):
            # apply_chat_template takes one tools list per batch; a mixed batch would be rendered wrongly
            raise ValueError(
                "a batch mixes trajectories with different tool sets; build the set with one toolkit"
            )
        output = self.processor.apply_chat_template(
            [[protocol_message(m, self.dataset_dir) for m in row["messages"]] for row in rows],
            tools=json.loads(tools),
            chat_template=self.chat_template,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            return_assistant_tokens_mask=True,
            processor_kwargs={"padding": True, "padding_side": "right", "add_special_tokens": False},
        )
        labels = output["input_ids"].clone()
        labels[output["attention_mask"] == 0] = IGNORE_INDEX
        labels[output.pop("assistant_masks") == 0] = IGNORE_INDEX
        output["labels"] = labels
        return dict(output)


def build_dataset(dataset_dir: Path, processor: QwenVLProcessor, max_length: int) -> Dataset:
    """The stored trajectories as a conversational multimodal dataset, each checked to render to its text.

    A trajectory whose rendering differs from ``Trajectory.text`` would train the model on a prompt the
    station never shows (another template, another tools block), so it stops the run rather than being
    skipped. Trajectories longer than ``max_length`` tokens are left out and counted in the log. Tools are
    kept as JSON text: Arrow would merge the tools' different schemas into one and fill the gaps with nulls.
    """
    dataset_dir = Path(dataset_dir)
    tools_by_id, too_long = {}, 0
    for trajectory in load_trajectories(dataset_dir):
        rendered = processor.apply_chat_template(trajectory.messages, tools=trajectory.tools, tokenize=False)
        if rendered != trajectory.text:
            raise SFTConfigError(
                f"{dataset_dir}: trajectory {trajectory.id} renders differently with this checkpoint's chat "
                "template than when it was built; train with the template the station runs"
            )
        images = [
            part["image"]
            for message in trajectory.messages
            if isinstance(message["content"], list)
            for part in message["content"]
            if part["type"] == "image"
        ]
        # each image is one <|image_pad|> in the text and expands to its grid's tokens in the model input
        length = len(processor.tokenizer(rendered, add_special_tokens=False)["input_ids"]) + sum(
            processor.image_processor.num_image_tokens(*image.shape[:2]) - 1 for image in images
        )
        if length > max_length:
            too_long += 1
            continue
        tools_by_id[trajectory.id] = json.dumps(trajectory.tools, ensure_ascii=False)
    if too_long:
        log.warning("left out %d trajectories longer than max_length=%d tokens", too_long, max_length)
    if not tools_by_id:
        raise SFTConfigError(f"{dataset_dir}: no trajectory fits in max_length={max_length} tokens")
    with (dataset_dir / TRAJECTORIES_FILE).open(encoding="utf-8") as lines:
        records = [r for r in map(json.loads, lines) if r["id"] in tools_by_id]
    # "images" (paths, in order of appearance) is what TRL looks for to treat the set as vision data
    # (VLM checks, no text preparation); the collator loads the images from inside the messages.
    return Dataset.from_list(
        [
            {"id": r["id"], "messages": r["messages"], "images": r["images"], "tools": tools_by_id[r["id"]]}
            for r in records
        ]
    )


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint-N that was written to the end: the Trainer writes trainer_state.json last, so a
    run killed mid-save leaves a folder without it, which must not be resumed from."""
    steps = {
        int(folder.name.removeprefix("checkpoint-")): folder
        for folder in output_dir.glob("checkpoint-*")
        if folder.name.removeprefix("checkpoint-").isdigit() and (folder / STATE_FILE).is_file()
    }
    return steps[max(steps)] if steps else None


def run_sft(config: SFTRunConfig) -> Path:
    """Fine-tune ``config.model_dir`` on ``config.dataset_dir`` and return ``config.output_dir``.

    The output loads with `station.backends.hf.HFBackend(output_dir)` after full fine-tuning (weights,
    processor and the inference chat template), or `HFBackend(model_dir, adapter_dir=output_dir)` with
    LoRA. ``trainer_state.json`` there holds the loss history.
    """
    import transformers
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer
    from trl.chat_template_utils import get_training_chat_template

    from station.backends.hf.loading import MODEL_CLASSES, check_model_dir

    model_dir, output_dir = Path(config.model_dir), Path(config.output_dir)
    model_type = check_model_dir(model_dir)
    transformers.set_seed(config.seed)
    processor = QwenVLProcessor.from_pretrained(model_dir, max_pixels=config.max_pixels)
    dataset = build_dataset(Path(config.dataset_dir), processor, config.max_length)
    training_template = get_training_chat_template(processor)
    if training_template is None:  # the checkpoint's template already carries generation markers
        training_template = processor.chat_template

    bf16 = torch.cuda.is_available() and not config.use_cpu  # CPUs have no fast bf16 matmuls
    model = getattr(transformers, MODEL_CLASSES[model_type]).from_pretrained(
        model_dir,
        dtype=torch.bfloat16 if bf16 else torch.float32,
        use_safetensors=True,
        local_files_only=True,
    )
    if config.freeze_vision_tower:
        model.model.visual.requires_grad_(False)
    args = SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps in transformers 5
        lr_scheduler_type=config.lr_scheduler_type,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        gradient_checkpointing=config.gradient_checkpointing,
        bf16=bf16,
        use_cpu=config.use_cpu,
        seed=config.seed,
        logging_steps=config.logging_steps,
        logging_first_step=True,  # the untrained loss, so a run shows how far it came
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        assistant_only_loss=True,  # TRL's checks for it (transformers version, end-of-turn token in the loss)
        max_length=None,  # lengths are enforced in build_examples; truncation would cut image tokens
        remove_unused_columns=False,  # the collator needs messages and tools, which forward() does not take
        report_to="none",
    )
    peft_config = (
        LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.lora_target_modules,
            task_type="CAUSAL_LM",
        )
        if config.lora
        else None
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        data_collator=IndusCoTCollator(processor, training_template, Path(config.dataset_dir)),
        peft_config=peft_config,
    )
    last = last_complete_checkpoint(output_dir) if config.resume else None
    if last is not None:
        log.info("sft: resuming from %s", last)
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    trainer.save_model(str(output_dir))
    processor.save_pretrained(output_dir)  # the inference template, not the training one, goes with the model
    trainer.state.save_to_json(str(output_dir / STATE_FILE))
    return output_dir
