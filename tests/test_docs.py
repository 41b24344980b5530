import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_options_doc_is_generated_from_the_code():
    spec = importlib.util.spec_from_file_location("options_doc", ROOT / "scripts" / "options_doc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (ROOT / "docs" / "options.md").read_text() == mod.render(), "run scripts/options_doc.py"


def test_readme_opens_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```", 2)[1].splitlines()[1:]
    commands = [line for line in block if line.strip() and not line.startswith("#")]
    assert len(commands) == 2 and commands[0].endswith("selfsup demo")
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_readme_python_block_runs_as_written(tmp_path, monkeypatch):
    """The README's Python section, executed as it is written (digits, a few steps each) in a fresh folder."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From Python\n", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert 0 <= scope["record"]["numbers"]["top1"] <= 100
    assert scope["features"].shape[0] == 4 and (tmp_path / "runs" / "py-small" / "backbone.safetensors").exists()
    assert scope["cfg"].optim.lr == 1e-4


def test_the_docs_index_links_every_page_and_only_pages_that_exist():
    import re

    docs = Path(__file__).parents[1] / "docs"
    index = (docs / "index.md").read_text()
    links = set(re.findall(r"\]\(([^)#]+\.md)\)", index))
    assert all((docs / link).exists() for link in links), sorted(link for link in links if not (docs / link).exists())
    pages = {p.name for p in docs.glob("*.md")} - {"index.md"} | {"ablations/reproduction.md"}
    assert pages <= links, sorted(pages - links)


def readme_commands() -> list[str]:
    """Every `selfsup ...` command of the README's and docs' bash blocks, continuation lines joined, comments cut."""
    import re

    commands = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip()
                if line.startswith("selfsup "):
                    commands.append(line)
    return commands


def test_every_selfsup_command_in_the_docs_parses_and_its_values_build(capsys):
    """The documented commands, as written, against today's parser and option checks (not run: they read the
    user's files); a renamed flag or a refused value in the docs fails here."""
    import shlex

    import pytest

    from selfsup.cli import build_parser, resolve_config

    commands = readme_commands()
    assert len(commands) > 20, commands
    for command in commands:
        argv = shlex.split(command)[1:]
        try:
            args = build_parser(argv).parse_args(argv)
        except SystemExit:
            pytest.fail(f"the docs' `{command}` does not parse: {capsys.readouterr().err.strip()[-300:]}")
        if args.command in ("pretrain", "demo") and not getattr(args, "resume", False) and "--config" not in argv:
            resolve_config(args)
