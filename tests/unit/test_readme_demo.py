"""The README's front page names the demo's own stop command, as scripts/demo.sh spells it."""

import re

from support.checkout import REPO


def test_the_readme_names_the_demo_stop_command_the_script_knows():
    script = (REPO / "scripts" / "demo.sh").read_text()
    assert re.search(r"^\s*up \| down\)", script, re.M), "demo.sh no longer takes `down`"
    setup = (REPO / "README.md").read_text().split("## Set-up commands", 1)[1]
    block = setup.split("```sh", 1)[1].split("```", 1)[0]
    assert "./scripts/demo.sh down" in block
