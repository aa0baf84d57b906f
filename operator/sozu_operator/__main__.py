from sozu_operator.cli import main

raise SystemExit(main())
