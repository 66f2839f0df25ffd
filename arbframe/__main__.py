import sys

from arbframe.cli import main

sys.exit(main())
