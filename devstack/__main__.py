"""`python -m devstack run|migrate|stop|demo`."""

import sys

from devstack import stack


def _demo() -> int:
    from devstack.demo import main

    return main()


COMMANDS = {"run": stack.run, "migrate": stack.migrate, "stop": stack.stop, "demo": _demo}


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m devstack {{{'|'.join(COMMANDS)}}}", file=sys.stderr)
        return 2
    return COMMANDS[sys.argv[1]]()


sys.exit(main())
