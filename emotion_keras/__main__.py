import sys

from emotion_keras.cli import main

sys.exit(main())
