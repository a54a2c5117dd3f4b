"""Training the student (in progress: the default student builder lives here)."""
