"""What the tests share: the test channel, trees, child processes, and the
stand-ins for a site (Slurm, loop images, slowfs, realistic packages)."""
