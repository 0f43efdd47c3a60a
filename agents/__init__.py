"""wandb agents: the agent contract, the per-GPU launcher, the in-process agent, warm-up."""
