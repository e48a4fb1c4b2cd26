"""Training engine: the trainer loop, checkpoints, run directories, devices and precision."""
