"""`python -m connectors.sandbox.salesforce`: a peer in the foreground for a demo."""

import sys

from connectors.sandbox.salesforce.peer import main

sys.exit(main())
