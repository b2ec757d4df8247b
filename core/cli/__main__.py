"""``python -m polydiff.cli``."""

from . import main

raise SystemExit(main())
