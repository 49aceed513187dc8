import os
import sys

# OpenMP threads that spin while they wait slow everything down on a shared or small machine.
# The variable only takes effect when it is set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    from facekp.cli import main
except KeyboardInterrupt:
    # Ctrl-C while the command is still importing its libraries.
    sys.exit(130)

sys.exit(main())
