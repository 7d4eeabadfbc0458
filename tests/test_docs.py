"""The docs stay true to the code: the tutorial's commands name real scripts and its code
is the scripts' own code; every example script is listed where users look for it."""

import re

from helpers import REPO

TUTORIAL = REPO / "docs" / "tutorial.md"


def test_the_tutorials_code_is_the_examples_code():
    text = TUTORIAL.read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    checked = 0
    for section in sections:
        named = re.findall(r"examples/(\w+\.py)", section)
        sources = "\n".join((REPO / "examples" / n).read_text() for n in dict.fromkeys(named))
        source_lines = {line.strip() for line in sources.splitlines()}
        for block in re.findall(r"```python\n(.*?)```", section, flags=re.S):
            for line in block.splitlines():
                if line.strip() and "..." not in line:
                    assert line.strip() in source_lines, (section.splitlines()[0], line)
                    checked += 1
        for command in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
            script = re.search(r"examples/(\w+\.py)", command).group(1)
            source = (REPO / "examples" / script).read_text()
            for flag in re.findall(r"--(\w+)=", command):
                if flag not in ("order", "epochs", "run_name", "scenario", "steps_per_task"):
                    assert f'"{flag}"' in source, (script, flag)  # the script's own flag
    assert checked > 20


def test_every_example_is_listed_in_the_docs():
    scripts = sorted(p.name for p in (REPO / "examples").glob("*.py"))
    table = (REPO / "docs" / "your_model.md").read_text()
    assert all(f"`examples/{s}`" in table for s in scripts), scripts
    assert all(f"examples/{s}" in TUTORIAL.read_text()
               for s in ("cnn_mnist.py", "noisy_step.py", "l2_to_phase_start.py",
                         "mas_remedy.py"))
