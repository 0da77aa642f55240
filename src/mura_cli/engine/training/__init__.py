"""Training: one run or --folds (train_job.train), the recipe, data selection, nested estimates, DDP."""
