"""Training: the Accelerate loop, EMA and periodic validation."""
