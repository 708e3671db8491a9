"""``python -m interleaf`` is the ``interleaf`` command."""

import sys

from interleaf.cli import main

if __name__ == "__main__":
    sys.exit(main())
