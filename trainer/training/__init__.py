"""What every trainer shares: the config, the job directory, the training session and the run helpers."""
