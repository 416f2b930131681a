import sys

from mlops_course.course.cli import main

sys.exit(main())
