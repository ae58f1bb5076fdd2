"""``optical-memory calibrate`` against a real HTTP server on localhost that reads each page with CPU OCR.

The server speaks OpenAI's chat-completions API (and Anthropic's Messages API): it decodes the image it receives,
runs rapidocr on it and answers with the text, so the calibration measures what rapidocr reads at each tier. A real
client, a real server, real OCR; two pages in all, so it stays small.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from optical_memory import OpticalMemory
from optical_memory.calibration import CalibrationSettings, run_calibration
from optical_memory.cli.main import main
from optical_memory.core.consumers import get_consumer
from optical_memory.policies import load_reading_model
from optical_memory.readers import get_reader


class OCRServer(ThreadingHTTPServer):
    """Answers chat requests with rapidocr's reading of the request's image; the first request gets a 429."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), OCRHandler)
        self.reader = get_reader("rapidocr")
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.refuse_next = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class OCRHandler(BaseHTTPRequestHandler):
    server: OCRServer

    def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            headers = {name.lower(): value for name, value in self.headers.items()}
            self.server.requests.append({"path": self.path, "headers": headers, "body": body})
            refuse, self.server.refuse_next = self.server.refuse_next, False
        if refuse:
            self._reply(429, {"error": {"message": "slow down"}})
            return
        parts = body["messages"][0]["content"]
        if self.path == "/v1/chat/completions":
            url = next(part["image_url"]["url"] for part in parts if part["type"] == "image_url")
            data = url.split(",", 1)[1]
        elif self.path == "/v1/messages":
            data = next(part["source"]["data"] for part in parts if part["type"] == "image")
        else:
            self._reply(404, {"error": {"message": f"no route {self.path}"}})
            return
        with self.server.lock:  # one OCR at a time: the test machine has two cores
            text = self.server.reader.read(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
        if self.path == "/v1/messages":
            self._reply(200, {"type": "message", "role": "assistant", "content": [{"type": "text", "text": text}]})
        else:
            self._reply(200, {"object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server():
    ocr = OCRServer()
    thread = threading.Thread(target=ocr.serve_forever, daemon=True)
    thread.start()
    yield ocr
    ocr.shutdown()
    ocr.server_close()


def test_calibrate_measures_resumes_from_its_cache_and_feeds_the_reading_gate(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CALIBRATE_TEST_KEY", "sk-local-test")
    server.refuse_next, before = True, len(server.requests)
    out, cache = tmp_path / "gpt-4o.json", tmp_path / "cache"
    argv = ["calibrate", "--consumer", "openai:gpt-4o", "--endpoint", f"{server.url}/v1", "--tiers", "high-768,low",
            "--densities", "12", "--pages", "1", "--api-key-env", "CALIBRATE_TEST_KEY", "--cache", str(cache),
            "--out", str(out)]
    # Capped at one request: the estimate comes first, a partial file is written, and the rest is left for later.
    assert main([*argv, "--max-requests", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.index("2 requests, 0 answered from the cache, 1 to send now") < printed.index("requests sent")
    assert "priced by openai:gpt-4o" in printed and "stopped at --max-requests 1" in printed
    partial = json.loads(out.read_text())
    assert partial["provenance"]["complete"] is False and [p["tier"] for p in partial["points"]] == ["high-768"]
    # The 429 was retried: the server saw the refused request and its repeat, both with the key.
    assert len(server.requests) == before + 2
    assert all(r["headers"]["authorization"] == "Bearer sk-local-test" for r in server.requests[before:])
    assert all(r["path"] == "/v1/chat/completions" for r in server.requests[before:])

    assert main(argv) == 0  # resumes: only the missing request is sent
    assert "2 requests, 1 answered from the cache, 1 to send now" in capsys.readouterr().out
    assert len(server.requests) == before + 3
    assert main(argv) == 0  # everything cached now: nothing is sent
    assert "0 to send now" in capsys.readouterr().out and len(server.requests) == before + 3

    data = json.loads(out.read_text())
    provenance = data["provenance"]
    assert provenance["model"] == "gpt-4o" and provenance["complete"] is True and provenance["requests"] == 2
    assert {"date", "prompt", "scoring", "seed", "endpoint", "tokenizer"} <= set(provenance)
    assert data["tiers"] == ["high-768", "low"] and data["densities_font_px"] == [12]
    points = {point["tier"]: point for point in data["points"]}
    for point in points.values():
        assert point["pages"] == 1 and point["facts"] >= 10
        assert point["ci_low"] <= point["recall"] <= point["ci_high"]
        assert point["recall"] == pytest.approx(point["recalled"] / point["facts"], abs=1e-4)
    # 12-px type at 768 px is clear to rapidocr; the low-detail 512-px tier costs 85 tokens whatever it holds.
    assert points["high-768"]["recall"] >= 0.8
    assert points["low"]["image_tokens"] == 85 and points["high-768"]["image_tokens"] == 765

    consumer = get_consumer("openai:gpt-4o")
    model = load_reading_model(out)
    with OpticalMemory.open(":memory:", hot_turns=2, consumer=consumer, reading_model=model) as memory:
        for i in range(60):
            memory.add("user" if i % 2 else "assistant", f"turn {i}: the ferry to Kos leaves at 9:40 from pier 7. " * 9)
        ctx = memory.context(min_recall=0.5)
    # These pages are a little denser than the measured one: the prediction says it extrapolates, and the floor of
    # 0.9 would send them as text (tested in tests/policies); at 0.5 they go as images with the measured recall.
    measured = [view for view in ctx.pages if not view.forgotten and not view.as_text and view.tier.name == "high-768"]
    assert measured and all(view.expected_recall is not None for view in measured)
    assert all("measured by optical-memory calibrate" in view.reason and "extrapolated" in view.reason
               for view in measured)
    unmeasured = [view for view in ctx.pages if view.tier is not None and view.tier.name == "high-512"
                  and not view.as_text]
    assert all(view.expected_recall is None and "no reading model" in view.reason for view in unmeasured)


def test_calibrate_speaks_anthropics_messages_api(server, tmp_path):
    settings = CalibrationSettings(consumer="anthropic", endpoint=server.url, out=tmp_path / "claude.json",
                                   cache_dir=tmp_path / "cache", model="claude-test", api_format="anthropic",
                                   tiers=("768px",), densities=(12,), pages=1)
    server.refuse_next, before = False, len(server.requests)
    result = run_calibration(settings, log=lambda line: None, progress=False)
    assert result.complete and result.sent == 1
    request = server.requests[-1]
    assert len(server.requests) == before + 1 and request["path"] == "/v1/messages"
    assert request["headers"]["anthropic-version"] == "2023-06-01" and "x-api-key" not in request["headers"]
    assert request["body"]["model"] == "claude-test" and request["body"]["temperature"] == 0
    point = json.loads(settings.out.read_text())["points"][0]
    assert point["tier"] == "768px" and 0.0 <= point["recall"] <= 1.0 and point["facts"] >= 10


def test_a_refusing_endpoint_and_bad_settings_are_named(server, tmp_path, capsys):
    argv = ["calibrate", "--consumer", "openai:gpt-4o", "--endpoint", f"{server.url}/nowhere", "--tiers", "low",
            "--densities", "12", "--pages", "1", "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o.json")]
    server.refuse_next = False
    with pytest.raises(SystemExit):
        main(argv)
    assert "answered HTTP 404" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv[:5], "--tiers", "huge", *argv[7:]])
    assert "tiers ['huge'] are not on openai:gpt-4o's ladder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--api-key-env", "NO_SUCH_VARIABLE_SET"])
    assert "NO_SUCH_VARIABLE_SET" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--densities", "twelve"])
    assert "--densities must be comma-separated whole numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["calibrate", "--consumer", "openai:gpt-4o", "--endpoint", "ftp://x"])
    assert "endpoint must be an http" in capsys.readouterr().err
