"""fab remove's scripts: what of the app is on the host, and its removal (run by a local sh)."""

from types import SimpleNamespace

from support.local_step import M, read_step, run_step
from tasks.commands import removal


def settings(tmp_path, test="true", reload="true"):
    return SimpleNamespace(app_name="shop", nginx_file=str(tmp_path / "shop.conf"),
                           deploy_dir=str(tmp_path / "srv"), use_sudo=False,
                           nginx_test_cmd=test, nginx_reload_cmd=reload)


def test_facts_are_read_and_parsed(tmp_path):
    s = settings(tmp_path)
    text = removal.facts(s)
    assert "--filter label=bluegreen.app=shop" in text
    assert "--filter label=com.docker.compose.project=shop" in text
    result = read_step(f"{M} begin containers\nab12 shop-blue-1\n{M} end containers\n"
                       f"{M} begin images\nbluegreen-shop:blue\n{M} end images\n"
                       f"{M} nginx ours\n{M} deploy_dir yes")
    assert removal.parse_facts(result) == {
        "containers": [("ab12", "shop-blue-1")], "images": ["bluegreen-shop:blue"],
        "nginx": True, "foreign_nginx": False, "deploy_dir": True}


def test_only_this_apps_nginx_file_is_ours(tmp_path):
    s = settings(tmp_path)
    (tmp_path / "shop.conf").write_text("# bluegreen app=shop live=blue\n")
    assert run_step(removal.ours(s) + " && echo yes").stdout.strip() == "yes"
    (tmp_path / "shop.conf").write_text("# bluegreen app=shop2 live=blue\n")
    assert run_step(removal.ours(s) + " || echo no").stdout.strip() == "no"


def test_the_nginx_file_goes_back_when_nginx_refuses(tmp_path):
    s = settings(tmp_path, test="false")
    conf = tmp_path / "shop.conf"
    conf.write_text("# bluegreen app=shop live=blue\n")
    (tmp_path / "srv").mkdir()
    found = {"containers": [], "images": [], "nginx": True, "deploy_dir": True}
    result = run_step(removal.remove(s, found))
    assert result.code == 45 and conf.exists() and (tmp_path / "srv").exists()
    result = run_step(removal.remove(settings(tmp_path), found))
    assert result.code == 0 and not conf.exists() and not (tmp_path / "srv").exists()
    assert [v for k, v in result.marks if k == "removed"] == ["nginx", "deploy_dir"]
