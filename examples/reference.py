"""The reference recipe in Python: Qwen2.5-0.5B base, SFT on Alpaca, DPO on DPO-En-Zh-20k (English),
GRPO on GSM8K starting from the SFT checkpoint. Needs the Hugging Face hub and, realistically, a GPU."""

from ladder import DPO, GRPO, SFT, Pipeline
from ladder.data import DatasetSpec

pipeline = Pipeline(
    [
        SFT(dataset="alpaca_en", lora={"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
            num_train_epochs=1, assistant_only_loss=True, overlength="truncate"),
        DPO(dataset="dpo_en_zh_20k", beta=0.1, learning_rate=5e-6, num_train_epochs=1, overlength="truncate"),
        GRPO(dataset=DatasetSpec(source="gsm8k", limit=1000, seed=0), input="sft", num_generations=2,
             rewards={"exact_match": 1.0, "tag_format": 0.1}),
    ],
    model="Qwen/Qwen2.5-0.5B",
    name="reference",
    evals={"preference": {"source": "dpo_en_zh_20k", "limit": 200, "seed": 1},
           "verifiable": {"source": "gsm8k_test", "limit": 200}},
    generation={"max_new_tokens": 256},
)

if __name__ == "__main__":
    result = pipeline.run()
    print("final checkpoint:", result.final.path)
    print("report:", result.report)
