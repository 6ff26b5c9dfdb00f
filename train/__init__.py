"""Training: Indus-CoT trajectories, SFT and GRPO."""
