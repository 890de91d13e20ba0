"""LoRA supervised fine-tuning inside the harness (`harness train`).

    from harness.train import TrainConfig, load_train_config, train_adapter

    cfg = TrainConfig(base="smollm2-135m", data="train.jsonl", out="runs/lora", epochs=2, lr=1e-3,
                      eval_suites=["squad-qa"])
    result = train_adapter(cfg, log=print, progress=True)
    result.adapter_dir                  # PEFT folder: adapter_model.safetensors + adapter_config.json
    result.record["loss_curve"]         # training.json as a dict

Modules: `config` (TrainConfig, YAML loading), `data` (records -> samples), `encode`
(tokens and completion-only labels), `schedule` (data order, LR schedule), `overlap`
(refusing eval items in training data), `checkpoint`, `loop` (train_adapter), `model`
(loading, LoRA wrapping, bf16), `batches` (tensors and loss), `trainer` (prepare/step/validate/
checkpoint), `progress`, `outdir` (what OUT may hold), `record` (training.json),
`demo_data` (the SQuAD train/eval split of the demo). torch is imported only when a
training starts.
"""

from harness.train.config import TrainConfig, load_train_config, make_config
from harness.train.loop import RECORD_FILE, TrainResult, train_adapter

__all__ = ["RECORD_FILE", "TrainConfig", "TrainResult", "load_train_config", "make_config", "train_adapter"]
