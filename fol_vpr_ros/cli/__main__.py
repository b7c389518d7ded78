"""`python -m fol_vpr_ros.cli`: the same as `fol-vpr`."""

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
