from cowest.cli import main

raise SystemExit(main())
