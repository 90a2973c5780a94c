"""The nginx switch: put the file in place, test it, reload; rotate the access log."""

from .base import (NGINX_RELOAD_FAILED, NGINX_TEST_FAILED, NGINX_WRITE_FAILED, block, mark, q,
                   sudo, write_file)


def switch(settings, nginx_text):
    """Put the nginx file in place, test it, reload; put the old one back on failure.

    The old file is kept as DEPLOY_DIR/nginx.previous.conf.
    """
    s = sudo(settings)
    f, backup = settings.nginx_file, f"{settings.deploy_dir}/nginx.previous.conf"
    tmp = f + ".tmp"
    restore = (f"if [ \"$had\" = 1 ]; then cat {q(backup)} | {s}tee {q(tmp)} >/dev/null "
               f"&& {s}mv -f {q(tmp)} {q(f)}; else {s}rm -f {q(f)}; fi")
    return f"""set -u
[ -d {q(settings.deploy_dir + '/logs')} ] || mkdir -p {q(settings.deploy_dir + '/logs')}
had=0
if [ -f {q(f)} ]; then cat {q(f)} > {q(backup)} && had=1; fi
if ! out=$({write_file(f, nginx_text, prefix=s)} 2>&1); then
  echo "$M error could not write "{q(f)}
  {block('output', 'printf "%s" "$out"')}
  exit {NGINX_WRITE_FAILED}
fi
if ! out=$({s}{settings.nginx_test_cmd} 2>&1); then
  {restore}
  {block('output', 'printf "%s" "$out"')}
  exit {NGINX_TEST_FAILED}
fi
{rotate_access_log(settings)}
if ! out=$({s}{settings.nginx_reload_cmd} 2>&1); then
  {restore}
  {s}{settings.nginx_reload_cmd} >/dev/null 2>&1
  {block('output', 'printf "%s" "$out"')}
  exit {NGINX_RELOAD_FAILED}
fi
"""


# The access log is rotated at a switch once it is larger than this; one
# older file (access.log.1) is kept, so the logs take at most twice this.
ACCESS_LOG_MAX_BYTES = 64 * 1024 * 1024


def rotate_access_log(settings, max_bytes=ACCESS_LOG_MAX_BYTES):
    """access.log -> access.log.1 when it is over ACCESS_LOG_MAX_BYTES.

    Runs before the reload of a switch: the reload makes nginx open
    access.log afresh, while its old workers finish writing to the renamed
    file. So the log never grows without bound, and nothing is lost.
    """
    log = settings.access_log_path
    return (f"if [ \"$(wc -c 2>/dev/null < {q(log)} || echo 0)\" -gt {int(max_bytes)} ]; "
            f"then mv -f {q(log)} {q(log + '.1')} && {mark('rotated', 'access.log')}; fi")
