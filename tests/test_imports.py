import subprocess
import sys


def test_core_imports_no_optional_engines():
    """Importing rollwise and its RLVR stack pulls in none of ray, vllm, verl."""
    code = (
        "import sys, rollwise, rollwise.cli, rollwise.rlvr.trainer, rollwise.rlvr.engines;"
        "bad=[m for m in ('ray','vllm','verl') if m in sys.modules];"
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, f"optional engines imported: {out.stdout} {out.stderr[-2000:]}"


def test_cli_help_is_light():
    code = "import sys, rollwise.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
