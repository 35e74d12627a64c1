-- An example Lmod module for the site's conda, whose base environment holds
-- the conda-migrate package: after `module load conda`, users have `conda`
-- as `conda init` would set it up (`conda activate` works), `conda migrate`
-- and the site documentation's `conda-migrate`.
--
-- Install it as <a MODULEPATH directory>/conda/<version>.lua and set `root`
-- to the conda installation (the prefix of its base environment).

help([[
conda, with conda-migrate in its base environment.

Move your conda environments off $SCRATCH into $HOME/.conda/envs:

  conda migrate -d /scratch/$USER/conda-envs        (list, then choose at the prompt)
  conda migrate -d /scratch/$USER/conda-envs --all  (every valid one, no prompt)
  conda migrate -d /scratch/$USER/conda-envs --all --submit -t 4:00:00
                                                    (the same, as a Slurm batch job)
]])

whatis("Name: conda")
whatis("Description: conda, with conda migrate to move environments off $SCRATCH")

local root = "/opt/conda"

-- conda's own shell setup, the file `conda init` sources: condabin/ on PATH
-- (conda alone, so that base's python does not shadow the system's) and the
-- `conda` shell function that `conda activate` needs. Lmod records what it
-- changes and undoes it on unload.
source_sh("bash", pathJoin(root, "etc/profile.d/conda.sh"))

-- The command the site documentation names lives in base's bin/, which
-- stays off PATH for the reason above.
local console_script = pathJoin(root, "bin/conda-migrate")
set_shell_function(
  "conda-migrate",
  '"' .. console_script .. '" "$@"',
  console_script .. " $*"
)
