"""Shared test configuration for tests/rlvr (importable by name, unlike ``conftest``)."""

#: a small, fast configuration: 2-digit add3, a very small model, short warm start
SMALL = [
    "model.tiny.hidden_size=64", "model.tiny.num_layers=2", "model.tiny.num_heads=4",
    "model.tiny.intermediate_size=128", "task.params.max_operand=49", "task.params.n_train=1024",
    "task.params.n_test=128", "sft.steps=120", "sft.batch_size=64", "sft.lr=3e-3", "sft.examples=4000",
    "rollout.max_new_tokens=5", "train.prompts_per_step=16", "train.eval_every=0", "train.checkpoint_every=0",
    "train.eval_prompts=128", "run.report=false", "run.threads=1",
]
