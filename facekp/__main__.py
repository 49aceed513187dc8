import os
import sys

# OpenMP threads that spin while they wait slow everything down on a shared or small machine.
# The variable only takes effect when it is set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from facekp.cli import main  # noqa: E402

sys.exit(main())
