"""What every trainer shares: the config, the job directory, the training session, the epoch loop and the run helpers."""
