"""The engine: config resolution, the trainer, optimizers, checkpoints, run directories, distributed, sampling."""
