from catalyst_ops.cli import main

raise SystemExit(main())
