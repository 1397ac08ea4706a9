"""ShieldDiff RL: DDPO-style sampling with log-probabilities, PPO, rewards and the trainer."""
