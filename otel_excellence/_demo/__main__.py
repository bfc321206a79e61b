import sys

from otel_excellence._demo.app import main

sys.exit(main())
