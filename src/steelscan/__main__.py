import sys

from steelscan.cli import main

sys.exit(main())
