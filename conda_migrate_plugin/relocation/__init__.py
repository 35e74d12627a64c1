"""Moving an environment to a new prefix without conda: the relocate engine,
the file-by-file check every copy passes (conda's clone's too), the repair
of what a purge took, the files one run's environments share, and their
extended attributes. None of it needs conda, so relocation runs where conda
cannot."""
