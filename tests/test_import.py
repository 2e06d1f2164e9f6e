"""A broken or stale build fails at import with a message that says what to do."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_missing_extension_message():
    # Make the compiled module unimportable, as a source checkout without a build is.
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'ata_ext._C': raise ImportError('no compiled module')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import ata_ext\n"
    )
    r = run(code)
    assert r.returncode != 0
    assert "could not be loaded" in r.stderr and "pip install --no-build-isolation" in r.stderr


def test_stale_build_message():
    # Pretend the binary was built against another torch.
    code = (
        "import torch\n"
        "real = torch.__version__\n"
        "torch.__version__ = '0.0.1'\n"
        "import ata_ext\n"
    )
    r = run(code)
    assert r.returncode != 0
    assert "was built against torch" in r.stderr and "rebuild" in r.stderr


def test_error_messages_with_numbers_do_not_crash():
    # A build that carries its own static libstdc++ crashed (SIGSEGV) formatting the shape in this
    # message, killing the test process instead of raising: run it where a crash is a failure.
    r = run(
        "import torch, ata_ext\n"
        "try:\n"
        "    torch.ops.ata_ext.linear_sum_assignment(torch.rand(5))\n"
        "except ValueError as e:\n"
        "    assert '[5]' in str(e), e\n"
        "    print('raised')\n"
    )
    assert r.returncode == 0 and r.stdout.strip() == "raised", (r.returncode, r.stderr[-2000:])
