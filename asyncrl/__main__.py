import sys

from asyncrl.run import main

sys.exit(main())
