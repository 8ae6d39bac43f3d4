"""`python -m edgebench.study [--task classify|detect] [--out FOLDER] [--tables-only]`."""

import sys

from edgebench.study import main

sys.exit(main())
