from stagewarden.cli import main

raise SystemExit(main())
