import sys

from pmlseg.cli import main

sys.exit(main())
