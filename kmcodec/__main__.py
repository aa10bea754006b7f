"""`python -m kmcodec` is the `kmq` command."""

from .cli import main

raise SystemExit(main())
