import sys

from otel_excellence._cli.demo_app.app import main

sys.exit(main())
