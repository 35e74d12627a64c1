-- An example Lmod module for the site's conda, whose base environment holds
-- the conda-migrate package: after `module load conda`, users have both
-- `conda migrate` and `conda-migrate`.
--
-- Install it as <a MODULEPATH directory>/conda/<version>.lua and set `root`
-- to the conda installation (the prefix of its base environment).

help([[
conda, with conda-migrate in its base environment.

Move your conda environments off $SCRATCH into $HOME/.conda/envs:

  conda migrate -d /scratch/$USER/conda-envs        (choose at the prompt)
  conda migrate -d /scratch/$USER/conda-envs --all  (everything, as a batch job)
]])

whatis("Name: conda")
whatis("Description: conda, with conda migrate to move environments off $SCRATCH")

local root = "/opt/conda"

-- bin/ rather than condabin/: condabin holds only `conda`, and the
-- conda-migrate console script the site documentation names is in bin/.
prepend_path("PATH", pathJoin(root, "bin"))
