"""What keeps a run from losing anything: atomic and durable writes, the
run's private state directory, locks, the journal a rerun resumes from,
stops by signal at safe points, and the checked removal of the old
environment."""
