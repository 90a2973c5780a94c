"""One meaning per short flag across every task."""

from tasks import ns
from tasks.cli.flags import SHORT_FLAGS


def test_a_short_flag_means_one_flag_on_every_task():
    meanings = {}
    for name in ns.task_names:
        for arg in ns[name].get_arguments():
            for short in (n for n in arg.names if len(n) == 1):
                meanings.setdefault(short, set()).add(arg.name)
    assert all(len(names) == 1 for names in meanings.values()), meanings
    assert {short: next(iter(names)) for short, names in meanings.items()} == {
        short: name for name, short in SHORT_FLAGS.items()
        if any(name == a.name for t in ns.task_names for a in ns[t].get_arguments())}
