"""`python -m keras_faceset.cli`: the `keras-faceset` command."""

import sys

from keras_faceset.cli import main

sys.exit(main())
