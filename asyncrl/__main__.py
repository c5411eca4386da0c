from asyncrl.run import main
import sys

sys.exit(main())
