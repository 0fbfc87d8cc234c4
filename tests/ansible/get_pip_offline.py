"""Offline stand-in for ansible-test's get-pip bootstrap: pip from ensurepip (bundled with
CPython), then the requested install through that pip (package registry only)."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
