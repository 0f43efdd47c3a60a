import sys

from agents.launcher import main

sys.exit(main())
