"""Training jobs for the UI: the request, the queue, the trainer child process and job summaries."""
