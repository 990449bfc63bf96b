import sys
import textwrap
import time
from pathlib import Path

import pytest

from lorastack.errors import EngineError
from lorastack.models import ModelRecord
from lorastack.serve import engine as engine_module
from lorastack.serve.engine import EngineLaunch, EngineProcess, build_launch
from lorastack.settings import load_settings
from tests.servers import free_port


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_launch_on_the_cpu_enables_runtime_lora(
    fake_base: ModelRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "gpu_visible", lambda: False)
    settings = load_settings()
    launch = build_launch(settings.engine, fake_base, settings.max_lora_rank)
    argv = launch.argv
    assert argv[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert _flag(argv, "--model") == str(fake_base.path)
    assert _flag(argv, "--served-model-name") == "tiny"
    assert _flag(argv, "--host") == "127.0.0.1"
    assert "--enable-lora" in argv
    assert _flag(argv, "--max-lora-rank") == "16"
    assert _flag(argv, "--max-loras") == "8"
    assert launch.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert launch.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert launch.env["HF_HUB_OFFLINE"] == "1"
    assert launch.env["LORASTACK_LORA_OPS"] == "lorastack"
    assert launch.url == "http://127.0.0.1:8100"


def test_vllms_own_lora_ops_are_one_setting_away(
    fake_base: ModelRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LORASTACK_ENGINE__LORA_OPS", "vllm")
    settings = load_settings()
    launch = build_launch(settings.engine, fake_base, settings.max_lora_rank)
    assert launch.env["LORASTACK_LORA_OPS"] == "vllm"


def test_compiling_with_lora_is_one_setting_away(
    fake_base: ModelRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings()
    assert build_launch(settings.engine, fake_base, 16).env["LORASTACK_LORA_COMPILE"] == "0"
    monkeypatch.setenv("LORASTACK_ENGINE__LORA_COMPILE", "true")
    settings = load_settings()
    assert build_launch(settings.engine, fake_base, 16).env["LORASTACK_LORA_COMPILE"] == "1"


def test_launch_on_a_gpu_passes_settings_through(
    fake_base: ModelRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "gpu_visible", lambda: True)
    monkeypatch.setenv("LORASTACK_ENGINE__TENSOR_PARALLEL_SIZE", "2")
    monkeypatch.setenv("LORASTACK_ENGINE__EXTRA_ARGS", '["--seed", "7"]')
    settings = load_settings()
    launch = build_launch(settings.engine, fake_base, 64)
    assert _flag(launch.argv, "--tensor-parallel-size") == "2"
    assert _flag(launch.argv, "--max-lora-rank") == "64"
    assert launch.argv[-2:] == ["--seed", "7"]
    assert "VLLM_CPU_KVCACHE_SPACE" not in launch.env


@pytest.mark.parametrize(
    ("device", "gpu", "reserved"),
    [("auto", False, "0.3"), ("auto", True, "0.9"), ("cpu", True, "0.3"), ("cuda", False, "0.9")],
)
def test_memory_reserved_by_default_depends_on_the_device(
    device: str, gpu: bool, reserved: str, fake_base: ModelRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "gpu_visible", lambda: gpu)
    monkeypatch.setenv("LORASTACK_ENGINE__DEVICE", device)
    settings = load_settings()
    assert settings.engine.gpu_memory_utilization is None
    launch = build_launch(settings.engine, fake_base, 16)
    assert _flag(launch.argv, "--gpu-memory-utilization") == reserved


@pytest.mark.parametrize("gpu", [False, True])
def test_an_explicit_memory_share_wins_on_every_device(
    gpu: bool, fake_base: ModelRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "gpu_visible", lambda: gpu)
    monkeypatch.setenv("LORASTACK_ENGINE__GPU_MEMORY_UTILIZATION", "0.55")
    settings = load_settings()
    launch = build_launch(settings.engine, fake_base, 16)
    assert _flag(launch.argv, "--gpu-memory-utilization") == "0.55"


def _fake_server(tmp_path: Path, body: str, port: int = 1) -> EngineLaunch:
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent(body))
    return EngineLaunch(
        argv=[sys.executable, str(script), str(port)],
        env={"CHILD_PID_FILE": str(tmp_path / "child")},
        url=f"http://127.0.0.1:{port}",
        served_model_name="x",
    )


def test_engine_that_exits_reports_its_log(tmp_path: Path) -> None:
    launch = _fake_server(tmp_path, "import sys\nprint('CUDA out of memory')\nsys.exit(3)\n")
    process = EngineProcess(launch, tmp_path / "engine.log", startup_timeout_s=30)
    with pytest.raises(EngineError, match="exited with code 3") as raised, process:
        pass
    assert "CUDA out of memory" in str(raised.value)


def test_engine_becomes_ready_and_is_stopped_with_its_children(tmp_path: Path) -> None:
    body = """
        import http.server, os, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open(os.environ["CHILD_PID_FILE"], "w").write(str(child.pid))
        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if self.path == "/health" else 404)
                self.end_headers()
        http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
    """
    process = EngineProcess(
        _fake_server(tmp_path, body, free_port()), tmp_path / "engine.log", startup_timeout_s=30
    )
    with process:
        child_pid = int((tmp_path / "child").read_text())
        assert _alive(child_pid)
    deadline = time.monotonic() + 5
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def test_engine_that_never_answers_times_out(tmp_path: Path) -> None:
    launch = _fake_server(tmp_path, "import time\ntime.sleep(600)\n")
    process = EngineProcess(launch, tmp_path / "engine.log", startup_timeout_s=2)
    with pytest.raises(EngineError, match="did not become healthy within 2 s"), process:
        pass


def test_the_engines_log_level_is_its_own_whatever_trl_did_to_this_process(
    fake_base: ModelRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "ERROR")  # as importing TRL leaves it
    launch = build_launch(load_settings().engine, fake_base, 16)
    assert launch.env["VLLM_LOGGING_LEVEL"] == "INFO"
    monkeypatch.setenv("LORASTACK_ENGINE__LOG_LEVEL", "DEBUG")
    assert build_launch(load_settings().engine, fake_base, 16).env["VLLM_LOGGING_LEVEL"] == "DEBUG"
