import sys

from facekp.cli import main

sys.exit(main())
