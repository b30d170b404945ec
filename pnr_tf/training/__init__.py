"""Training: the per-replica GAN step (gan_step.py) and the driver (trainer.py)."""
