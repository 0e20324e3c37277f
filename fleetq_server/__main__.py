"""`python -m fleetq_server serve ...`"""

import sys

from fleetq_server.cli import main

sys.exit(main())
