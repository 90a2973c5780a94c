"""fab check and a second app with the same APP_NAME: the nginx file of that
name is there already, proxying to ports that are not this app's."""

from support.checks import failures, judge, only
from support.plain_settings import make_settings
from tasks.model.nginx_file import render_nginx


def test_our_nginx_file_with_another_apps_ports_is_an_app_name_clash():
    ours = make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git", DEPLOY_DIR="/srv/shop2",
                         BLUE_PORT="8091", GREEN_PORT="8092")
    theirs = make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git")  # 8081/8082
    result = judge(ours, live=None, deploy_dir=False, nginx=render_nginx(theirs, "green"))
    assert only(result, "APP_NAME") == (
        "FAIL", "/etc/nginx/conf.d/shop.conf proxies to port 8082, neither BLUE_PORT nor "
                "GREEN_PORT: another app uses APP_NAME shop (give this one its own), or the "
                "file was edited")


def test_our_own_nginx_file_is_no_clash():
    s = make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git")
    result = judge(s)  # blue live, the file rendered for blue
    assert [r for r in result if r[0] == "APP_NAME"] == []
    assert failures(result) == []
